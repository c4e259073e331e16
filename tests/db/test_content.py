"""Content queries: membership ranges, closures, counts, lookups by digest, new versions."""

from __future__ import annotations

from sqlalchemy import insert
from sqlalchemy.orm import Session

from lazyreg.db import content as q
from lazyreg.db.engine import Database
from lazyreg.db.models import Blob, Content, Manifest, ManifestBlob, ManifestChild, Repository, Tag


def new_ids(session: Session, kind: str, n: int) -> list[int]:
    rows = session.execute(insert(Content).returning(Content.id, sort_by_parameter_order=True),
                           [{"kind": kind}] * n)
    return list(rows.scalars())


def blobs(session: Session, n: int, prefix: str = "b") -> list[int]:
    ids = new_ids(session, "blob", n)
    session.execute(insert(Blob), [{"id": i, "digest": f"sha256:{prefix}{i}", "size": i,
                                    "media_type": "x"} for i in ids])
    return ids


def manifests(session: Session, n: int) -> list[int]:
    ids = new_ids(session, "manifest", n)
    session.execute(insert(Manifest), [{"id": i, "digest": f"sha256:m{i}", "media_type": "x",
                                        "size": 1, "data": b"{}"} for i in ids])
    return ids


def tag(session: Session, name: str, manifest_id: int) -> int:
    (i,) = new_ids(session, "tag", 1)
    session.execute(insert(Tag), [{"id": i, "name": name, "manifest_id": manifest_id}])
    return i


def repository(session: Session) -> Repository:
    repo = Repository(name="r", latest_version=0)
    session.add(repo)
    session.flush()
    return repo


def test_chunked_splits_in_order_and_keeps_the_rest() -> None:
    assert list(q.chunked(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(q.chunked([], 3)) == []
    assert list(q.chunked(range(6), 3)) == [[0, 1, 2], [3, 4, 5]]


def test_versions_hold_their_content_as_ranges(db: Database) -> None:
    with db.write_session() as s:
        repo = repository(s)
        m = manifests(s, 3)
        b = blobs(s, 2)
        t = tag(s, "v1", m[0])
        first = q.create_version(s, repo, {t, m[0], b[0]}, "t1")
        assert first is not None and first.number == 1
        second = q.create_version(s, repo, {t, m[0], m[1], b[1]}, "t2")
        assert second is not None and second.number == 2
        assert second.added_counts == {"tags": 0, "manifests": 1, "blobs": 1}
        assert second.removed_counts == {"tags": 0, "manifests": 0, "blobs": 1}
        assert second.content_counts == {"tags": 1, "manifests": 2, "blobs": 1}
        assert q.create_version(s, repo, {t, m[0], m[1], b[1]}) is None  # no change
        assert repo.latest_version == 2
        third = q.create_version(s, repo, {b[0]})
        assert third is not None and third.content_counts == {"tags": 0, "manifests": 0,
                                                              "blobs": 1}
    with db.read_session() as s:
        assert q.version_content_ids(s, repo.id, 0) == set()
        assert q.version_content_ids(s, repo.id, 1) == {t, m[0], b[0]}
        assert q.version_content_ids(s, repo.id, 2) == {t, m[0], m[1], b[1]}
        assert q.version_content_ids(s, repo.id, 3) == {b[0]}  # removed, then added again
        assert dict(s.execute(q.tags_in_version(s, repo.id, 2)).all()) == {"v1": m[0]}
        assert list(s.execute(q.tags_in_version(s, repo.id, 3))) == []


def test_a_closure_follows_lists_to_any_depth_and_stops_on_a_cycle(db: Database) -> None:
    with db.write_session() as s:
        top, middle, leaf, other, loop_a, loop_b = manifests(s, 6)
        leaf_blobs = blobs(s, 2)
        other_blob = blobs(s, 1, "o")
        s.execute(insert(ManifestChild), [
            {"list_id": top, "child_id": middle, "position": 0},
            {"list_id": middle, "child_id": leaf, "position": 0},
            # A cycle, which a sync refuses to write but the query must survive.
            {"list_id": loop_a, "child_id": loop_b, "position": 0},
            {"list_id": loop_b, "child_id": loop_a, "position": 0}])
        s.execute(insert(ManifestBlob), [
            {"manifest_id": leaf, "blob_id": leaf_blobs[0], "position": -1},
            {"manifest_id": leaf, "blob_id": leaf_blobs[1], "position": 0},
            {"manifest_id": other, "blob_id": other_blob[0], "position": 0}])
    with db.read_session() as s:
        assert q.manifest_closure(s, [top]) == ({top, middle, leaf}, set(leaf_blobs))
        assert q.manifest_closure(s, [leaf, other]) == ({leaf, other},
                                                        {*leaf_blobs, *other_blob})
        assert q.manifest_closure(s, [loop_a]) == ({loop_a, loop_b}, set())
        assert q.manifest_closure(s, []) == (set(), set())


def test_lookups_by_digest_and_counts_go_past_one_chunk_of_parameters(db: Database) -> None:
    n = q.CHUNK * 2 + 5
    with db.write_session() as s:
        b = blobs(s, n)
        m = manifests(s, 3)
        t = [tag(s, f"t{i}", m[0]) for i in range(2)]
    with db.read_session() as s:
        digests = [f"sha256:b{i}" for i in b] + ["sha256:absent"]
        assert q.blob_ids_by_digest(s, digests) == {f"sha256:b{i}": i for i in b}
        assert q.manifest_ids_by_digest(s, [f"sha256:m{i}" for i in m]) == {
            f"sha256:m{i}": i for i in m}
        assert q.manifest_ids_by_digest(s, []) == {}
        assert q.count_by_kind(s, [*b, *m, *t]) == {"tags": 2, "manifests": 3, "blobs": n}
        assert q.tag_names(s, t) == {t[0]: "t0", t[1]: "t1"}
