"""Where a blob not stored can be fetched: its sources, and the cooldown of failed ones.

A source is a remote and the upstream repository name that listed the blob.
One that failed in a way that will not heal by itself (wrong bytes, 404,
refused credentials) is skipped until its `cooldown_until`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from lazyreg.db.models import BlobSource, Remote, utcnow


@dataclass(frozen=True)
class SourceRow:
    source_id: int
    upstream_name: str
    remote: Remote


@dataclass(frozen=True)
class BlobSources:
    usable: list[SourceRow]  # best first: fewest failures, then oldest
    why: str = ""  # when none is usable
    cooling: bool = False  # none is usable only because each failed recently


def usable_sources(session: Session, blob_id: int) -> BlobSources:
    """The sources of a blob not cooling down, and why there are none when there are none."""
    now = utcnow()
    rows = session.execute(
        select(BlobSource, Remote).join(Remote, Remote.id == BlobSource.remote_id)
        .where(BlobSource.blob_id == blob_id)
        .order_by(BlobSource.failures, BlobSource.id)).all()
    usable = [SourceRow(s.id, s.upstream_name, r) for s, r in rows
              if s.cooldown_until is None or _aware(s.cooldown_until) <= now]
    if usable:
        return BlobSources(usable)
    if rows:
        first = rows[0][0]
        return BlobSources([], cooling=True, why=(
            f"every upstream source is cooling down after a failure"
            f" (until {first.cooldown_until}): {first.last_error}"))
    return BlobSources([], why="no upstream source is recorded for this blob")


def cool_down(session: Session, source_id: int, error: str, until: datetime) -> None:
    row = session.get(BlobSource, source_id)
    if row is not None:
        row.failures += 1
        row.last_error = error
        row.cooldown_until = until


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; they were written in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)
