"""`record_sync`: what a sync found becomes content rows, sources and one new version.

Manifests are made here from bytes (as a sync would have fetched them) and
written to a fresh SQLite database; no upstream is involved.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from lazyreg.db import content as q
from lazyreg.db.engine import Database
from lazyreg.db.models import (
    Blob,
    BlobSource,
    Manifest,
    ManifestSource,
    Remote,
    Repository,
    RepositoryVersion,
    Tag,
)
from lazyreg.oci.manifest import parse_manifest
from lazyreg.sync.record import FetchedManifest, SyncFindings, record_sync
from tests.hostile import FOREIGN_LAYER, OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST
from tests.hostile import descriptor as blob_descriptor
from tests.hostile import digest as digest_of
from tests.sqlite import fresh_database, migrated_template


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrated_template(tmp_path_factory.mktemp("template"))


@pytest.fixture
def db(template: Path, tmp_path: Path) -> Iterator[Database]:
    database = fresh_database(template, tmp_path)
    yield database
    database.dispose()


def fetched(doc: dict[str, Any]) -> FetchedManifest:
    data = json.dumps(doc).encode()
    return FetchedManifest(digest_of(data), data, parse_manifest(data, doc["mediaType"]))


def image(n: int, layers: int = 1, foreign: bool = False, **extra: Any) -> FetchedManifest:
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": blob_descriptor(OCI_CONFIG, b'{"n": %d}' % n),
           "layers": [blob_descriptor(OCI_LAYER, b"layer-%d-%d" % (n, i)) for i in range(layers)]
           + ([blob_descriptor(FOREIGN_LAYER, b"foreign-%d" % n,
                               urls=["https://example.invalid/x"])] if foreign else []),
           **extra}
    return fetched(doc)


def index(*children: FetchedManifest) -> FetchedManifest:
    return fetched({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": c.parsed.media_type, "digest": c.digest, "size": len(c.data),
         "platform": {"os": "linux", "architecture": f"arch{i}"}}
        for i, c in enumerate(children)]})


def setup(session: Session) -> tuple[int, int, int, int]:
    """Two remotes and two repositories: their ids."""
    remotes = [Remote(name=n, url="http://up", upstream_name="app") for n in ("ra", "rb")]
    repos = [Repository(name=n, latest_version=0) for n in ("a", "b")]
    session.add_all([*remotes, *repos])
    session.flush()
    return remotes[0].id, remotes[1].id, repos[0].id, repos[1].id


def findings(repo: int, remote: int, tags: dict[str, FetchedManifest],
             new: list[FetchedManifest], **kw: Any) -> SyncFindings:
    return SyncFindings(repository_id=repo, remote_id=remote, upstream_name="app",
                        mirror=kw.pop("mirror", False),
                        tags={t: m.digest for t, m in tags.items()},
                        new_manifests={m.digest: m for m in new}, **kw)


def version_tags(session: Session, repo: int) -> dict[str, str]:
    number = session.get_one(Repository, repo).latest_version
    return {name: session.get_one(Manifest, mid).digest
            for name, mid in session.execute(q.tags_in_version(session, repo, number))}


def version_digests(session: Session, repo: int) -> set[str]:
    number = session.get_one(Repository, repo).latest_version
    ids = q.version_content_ids(session, repo, number)
    return (set(session.scalars(select(Manifest.digest).where(Manifest.id.in_(ids))))
            | set(session.scalars(select(Blob.digest).where(Blob.id.in_(ids)))))


def count(session: Session, model: Any) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def blob_digests(*manifests: FetchedManifest) -> set[str]:
    return {d.digest for m in manifests for _, d in m.parsed.linked_blobs}


def test_a_first_record_writes_content_sources_and_version_1(db: Database) -> None:
    one, two, three = image(1), image(2, layers=2), image(3)
    listed = index(two, three)
    with db.write_session() as s:
        ra, _, a, _ = setup(s)
        # Lists first: children must still be written before the lists naming them.
        version = record_sync(s, findings(a, ra, {"v1": one, "multi": listed},
                                          [listed, one, two, three]), "task-1")
        assert version is not None and version.number == 1 and version.task_id == "task-1"
        assert version.content_counts == {"tags": 2, "manifests": 4, "blobs": 7}
        assert version.added_counts == version.content_counts
        assert version.removed_counts == {"tags": 0, "manifests": 0, "blobs": 0}
    with db.read_session() as s:
        assert s.get_one(Repository, a).latest_version == 1
        assert version_tags(s, a) == {"v1": one.digest, "multi": listed.digest}
        assert version_digests(s, a) == ({one.digest, two.digest, three.digest, listed.digest}
                                         | blob_digests(one, two, three))
        assert count(s, ManifestSource) == 4 and count(s, BlobSource) == 7
        platforms = {m.digest: m.data for m in s.scalars(select(Manifest))}
        assert platforms[listed.digest] == listed.data  # the bytes as fetched


def test_the_same_findings_again_write_no_version_and_no_rows(db: Database) -> None:
    one = image(1)
    with db.write_session() as s:
        ra, _, a, _ = setup(s)
        assert record_sync(s, findings(a, ra, {"v1": one}, [one]), None) is not None
    with db.write_session() as s:
        assert record_sync(s, findings(a, ra, {"v1": one}, [one]), None) is None
        assert record_sync(s, findings(a, ra, {"v1": one}, []), None) is None  # trusted
    with db.read_session() as s:
        assert (count(s, Manifest), count(s, Blob), count(s, Tag)) == (1, 2, 1)
        assert count(s, RepositoryVersion) == 1  # version 1 only
        assert (count(s, ManifestSource), count(s, BlobSource)) == (1, 2)


def test_an_additive_record_moves_a_tag_and_keeps_the_others(db: Database) -> None:
    one, two, three = image(1), image(2), image(3)
    with db.write_session() as s:
        ra, _, a, _ = setup(s)
        record_sync(s, findings(a, ra, {"x": one, "y": two}, [one, two]), None)
    with db.write_session() as s:
        version = record_sync(s, findings(a, ra, {"x": three}, [three]), None)
        assert version is not None and version.number == 2
        assert version.removed_counts["tags"] == 1 and version.added_counts["tags"] == 1
    with db.read_session() as s:
        assert version_tags(s, a) == {"x": three.digest, "y": two.digest}
        assert q.version_content_ids(s, a, 1) != q.version_content_ids(s, a, 2)
        assert {"x", "y"} == {n for n, _ in s.execute(q.tags_in_version(s, a, 1))}


def test_a_mirror_record_drops_what_is_gone_but_keeps_tags_that_failed(db: Database) -> None:
    one, two, three = image(1), image(2), image(3)
    with db.write_session() as s:
        ra, _, a, _ = setup(s)
        record_sync(s, findings(a, ra, {"a": one, "b": two, "c": three}, [one, two, three]),
                    None)
    with db.write_session() as s:
        assert record_sync(s, findings(a, ra, {"a": one}, [], mirror=True,
                                       keep_tags={"b"}), None) is not None
    with db.read_session() as s:
        assert version_tags(s, a) == {"a": one.digest, "b": two.digest}
        held = version_digests(s, a)
        assert blob_digests(one, two) <= held  # the kept tag keeps its closure
        assert three.digest not in held and not blob_digests(three) & held


def test_foreign_layers_get_no_blob_row(db: Database) -> None:
    windows = image(1, foreign=True)
    with db.write_session() as s:
        ra, _, a, _ = setup(s)
        record_sync(s, findings(a, ra, {"win": windows}, [windows]), None)
    with db.read_session() as s:
        assert set(s.scalars(select(Blob.digest))) == blob_digests(windows)
        assert len(blob_digests(windows)) == 2  # config and the one own layer


def test_referrer_columns_are_filled_in_for_a_manifest_known_without_them(
        db: Database) -> None:
    one = image(1)
    sig = image(2, subject={"mediaType": OCI_MANIFEST, "digest": one.digest,
                            "size": len(one.data)}, artifactType="application/x-sig")
    with db.write_session() as s:
        ra, _, a, _ = setup(s)
        record_sync(s, findings(a, ra, {"v1": one, "sig": sig}, [one, sig]), None)
        s.execute(update(Manifest).values(subject_digest=None, artifact_type=None))
    with db.write_session() as s:
        record_sync(s, findings(a, ra, {"sig": sig}, [sig]), None)  # fetched again
    with db.read_session() as s:
        row = s.scalars(select(Manifest).where(Manifest.digest == sig.digest)).one()
        assert (row.subject_digest, row.artifact_type) == (one.digest, "application/x-sig")


async def test_two_repositories_recording_the_same_new_content_at_once_share_it(
        db: Database) -> None:
    one, two = image(1), image(2)
    ids = await db.write(setup)
    ra, rb, a, b = ids

    # Both syncs fetched the same manifests and race to record them as new.
    versions = await asyncio.gather(
        db.write(lambda s: record_sync(s, findings(a, ra, {"v1": one, "v2": two},
                                                   [one, two]), "ta")),
        db.write(lambda s: record_sync(s, findings(b, rb, {"v1": one}, [one]), "tb")))
    assert all(v is not None for v in versions)

    def check(s: Session) -> None:
        assert (count(s, Manifest), count(s, Blob), count(s, Tag)) == (2, 4, 2)
        assert version_tags(s, a) == {"v1": one.digest, "v2": two.digest}
        assert version_tags(s, b) == {"v1": one.digest}
        # Each remote served the manifest and its blobs: one source row per remote.
        sources = s.execute(select(ManifestSource.remote_id, Manifest.digest).join(
            Manifest, Manifest.id == ManifestSource.manifest_id)).all()
        assert sorted(sources) == sorted([(ra, one.digest), (ra, two.digest),
                                          (rb, one.digest)])
        assert count(s, BlobSource) == 6
    await db.read(check)


def test_a_list_naming_a_child_that_was_not_fetched_is_refused(db: Database) -> None:
    one = image(1)
    listed = index(one)
    with db.write_session() as s:
        ra, _, a, _ = setup(s)
    with pytest.raises(ValueError, match="was not fetched"), db.write_session() as s:
        record_sync(s, findings(a, ra, {"multi": listed}, [listed]), None)
    with db.read_session() as s:
        assert count(s, Manifest) == 0  # the transaction rolled back whole
