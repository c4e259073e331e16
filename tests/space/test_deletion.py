"""Deleting stored blobs: under their download lease, row then file, and back when storage
refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from lazyreg.check import adopt_orphan_files, check
from lazyreg.db import leases
from lazyreg.db.engine import Database
from lazyreg.db.models import Artifact, Lease
from lazyreg.space import delete_blobs
from lazyreg.storage.filesystem import FilesystemStore
from lazyreg.worker import WorkerId
from tests.space.conftest import World, make_services


def every(session: object, digests: list[str]) -> dict[str, int]:
    with_sizes = session.execute(  # type: ignore[attr-defined]
        select(Artifact.digest, Artifact.size).where(Artifact.digest.in_(digests)))
    return dict(with_sizes.all())


class RefusingStore(FilesystemStore):
    """Deletes `allowed` files, then refuses (a read-only mount, say)."""

    allowed = 1

    async def delete(self, digest: str) -> None:
        if self.allowed <= 0:
            raise PermissionError(13, "read-only file system")
        self.allowed -= 1
        await super().delete(digest)


async def test_blobs_go_leases_are_released_and_a_download_s_blob_is_skipped(
        world: World) -> None:
    digests = [await world.stored(bytes([i]) * 10) for i in range(3)]
    with world.db.write_session() as s:
        leases.claim(s, leases.blob_lease(digests[0]), WorkerId("elsewhere", 1), 60)
    removed = await delete_blobs(world.services, digests, every,
                                 in_use=lambda d: d == digests[1])
    assert (removed.count, removed.bytes, removed.skipped) == (1, 10, 2)
    assert world.artifact_digests() == await world.file_digests() == set(digests[:2])
    with world.db.read_session() as s:
        assert list(s.scalars(select(Lease.owner))) == ["elsewhere-1"]


async def test_storage_refusing_gives_the_rows_back(tmp_path: Path, db: Database) -> None:
    world = World(make_services(tmp_path, db))
    world.services.store = RefusingStore(tmp_path / "storage")
    digests = [await world.stored(bytes([i]) * 10) for i in range(3)]
    with pytest.raises(PermissionError):
        await delete_blobs(world.services, digests, every)
    assert world.artifact_digests() == await world.file_digests()
    assert len(world.artifact_digests()) == 2
    assert (await check(db, world.store)).ok


async def test_a_deletion_killed_between_row_and_file_is_adopted_at_start(
        world: World) -> None:
    up = world.remote()
    repo = world.repository("r")
    image = world.image("a", [b"layer"], up)
    world.version(repo, image.content_ids)
    layer = await world.stored(b"layer")
    config = await world.stored(b'{"image": "a"}', "config")
    manifest = await world.stored(image.digest.encode(), "blob")  # any bytes: not a manifest
    with world.db.write_session() as s:  # the rows went; the process died before the files
        s.execute(Artifact.__table__.delete())
    assert not (await check(world.db, world.store)).ok
    assert await adopt_orphan_files(world.db, world.store) == 3
    assert (await check(world.db, world.store)).ok
    with world.db.read_session() as s:
        kinds = dict(s.execute(select(Artifact.digest, Artifact.kind)).all())
    assert kinds == {layer: "layer", config: "config", manifest: "blob"}


async def test_start_up_leaves_a_blob_another_process_is_deleting(world: World) -> None:
    digest = await world.stored(b"layer")
    with world.db.write_session() as s:
        s.execute(Artifact.__table__.delete())
        leases.claim(s, leases.blob_lease(digest), WorkerId("elsewhere", 1), 60)
    assert await adopt_orphan_files(world.db, world.store) == 0
