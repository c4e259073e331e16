"""Blob sources: best first, cooling ones skipped, and why none is usable."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from sqlalchemy.orm import Session

from lazyreg.db.engine import Database
from lazyreg.db.models import Blob, BlobSource, Content, Remote, utcnow
from lazyreg.db.sources import cool_down, usable_sources

T = TypeVar("T")


def blob_with_sources(session: Session, n: int) -> tuple[int, list[int]]:
    content = Content(kind="blob")
    session.add(content)
    session.flush()
    session.add(Blob(id=content.id, digest="sha256:" + "a" * 64, size=1, media_type="x"))
    ids = []
    for i in range(n):
        remote = Remote(name=f"r{i}", url="http://x.invalid", upstream_name="x")
        session.add(remote)
        session.flush()
        source = BlobSource(blob_id=content.id, remote_id=remote.id, upstream_name="x")
        session.add(source)
        session.flush()
        ids.append(source.id)
    return content.id, ids


def test_cooling_sources_are_skipped_until_none_is_left(db: Database) -> None:
    blob_id, (first, second) = db_write(db, lambda s: blob_with_sources(s, 2))
    with db.read_session() as s:
        assert [r.source_id for r in usable_sources(s, blob_id).usable] == [first, second]
    until = utcnow() + timedelta(hours=1)
    with db.write_session() as s:
        cool_down(s, first, "DigestMismatch: wrong bytes", until)
    with db.read_session() as s:
        assert [r.source_id for r in usable_sources(s, blob_id).usable] == [second]
    with db.write_session() as s:
        cool_down(s, second, "NotFound: gone", until)
    with db.read_session() as s:
        found = usable_sources(s, blob_id)
    assert found.usable == [] and found.cooling and "cooling down" in found.why
    with db.write_session() as s:
        cool_down(s, first, "DigestMismatch: again", utcnow() - timedelta(seconds=1))
    with db.read_session() as s:  # its cooldown is over
        assert [r.source_id for r in usable_sources(s, blob_id).usable] == [first]


def test_no_source_at_all_says_so(db: Database) -> None:
    blob_id, _ = db_write(db, lambda s: blob_with_sources(s, 0))
    with db.read_session() as s:
        found = usable_sources(s, blob_id)
    assert found.usable == [] and not found.cooling and "no upstream source" in found.why


def db_write(db: Database, fn: Callable[[Session], T]) -> T:
    with db.write_session() as s:
        return fn(s)
