"""Orphan cleanup: what no version holds goes, with the rows that point at it, once older than
the protection time; what another repository holds, or a sync used lately, stays."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import delete, func, select, update

from lazyreg.check import check
from lazyreg.db.models import (
    Artifact,
    Blob,
    BlobSource,
    Content,
    Manifest,
    ManifestSource,
    Repository,
    utcnow,
)
from lazyreg.space import cleanup_orphans
from lazyreg.tasks.runner import Progress
from tests.space.conftest import World, sha256


def _count(world: World, model: type) -> int:
    with world.db.read_session() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


async def test_a_deleted_repository_s_content_goes_once_old(world: World) -> None:
    up = world.remote()
    gone, kept = world.repository("gone", "on_demand"), world.repository("kept", "on_demand")
    a = world.image("a", [b"shared layer", b"layer of a"], up)
    b = world.image("b", [b"layer of b"], up)
    index = world.index([a, b])  # an index: its children go in the pass after it
    tag = world.tag("latest", index)
    world.version(gone, {tag} | index.content_ids | a.content_ids | b.content_ids)
    other = world.image("k", [b"shared layer"], up)
    world.version(kept, other.content_ids | {world.tag("k", other)})
    for data in (b"shared layer", b"layer of a", b"layer of b"):
        await world.stored(data)
    await world.stored(b'{"image": "a"}', "config")
    await world.stored(b'{"image": "k"}', "config")
    lately = await world.stored(b'{"image": "b"}', "config")
    with world.db.write_session() as s:
        s.execute(delete(Repository).where(Repository.id == gone))
    before = world.artifact_digests()

    fresh = await cleanup_orphans(world.services, Progress(), 3600, lambda _: False)
    assert sum(fresh.content.values()) == 0 and fresh.artifacts.count == 0
    assert world.artifact_digests() == before

    hours_ago = utcnow() - timedelta(hours=2)
    with world.db.write_session() as s:
        s.execute(update(Content).values(created=hours_ago))
        s.execute(update(Artifact).values(created=hours_ago, last_used=time.time() - 7200))
        # A sync found this config stored a moment ago and reuses it.
        s.execute(update(Artifact).where(Artifact.digest == lately)
                  .values(last_used=time.time()))
    progress = Progress()
    cleaned = await cleanup_orphans(world.services, progress, 3600, lambda _: False)
    # tag; index, a, b; config and layer of a, config and layer of b (not the shared one)
    assert cleaned.content == {"tag": 1, "manifest": 3, "blob": 4}
    assert cleaned.artifacts.count == 3
    assert world.artifact_digests() == {sha256(b"shared layer"), sha256(b'{"image": "k"}'),
                                        lately}
    assert await world.file_digests() == world.artifact_digests()
    with world.db.read_session() as s:
        assert set(s.scalars(select(Manifest.digest))) == {other.digest}
        assert set(s.scalars(select(Blob.digest))) == {sha256(b"shared layer"),
                                                       sha256(b'{"image": "k"}')}
        assert s.scalar(select(func.count()).select_from(BlobSource)) == 2
        assert s.scalar(select(func.count()).select_from(ManifestSource)) == 1
    assert progress.counters["manifests"]["done"] == 3
    assert progress.message.startswith("removed 1 tags, 3 manifests, 4 blobs and 3 artifacts")
    assert (await check(world.db, world.store)).ok


async def test_an_old_artifact_of_young_orphan_content_is_kept(world: World) -> None:
    # Content a sync just wrote, not in a version yet, whose blob was stored long ago.
    world.image("a", [b"layer"], world.remote())
    digest = await world.stored(b"layer")
    with world.db.write_session() as s:
        s.execute(update(Artifact).values(created=utcnow() - timedelta(hours=2), last_used=0))
    cleaned = await cleanup_orphans(world.services, Progress(), 3600, lambda _: False)
    assert cleaned.artifacts.count == 0 and sum(cleaned.content.values()) == 0
    assert world.artifact_digests() == {digest}
    assert _count(world, Content) == 3  # manifest, config, layer
