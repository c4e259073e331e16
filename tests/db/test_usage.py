"""The usage log: uses written in batches, never back in time; busy marks renewed and cleared."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select, update

from lazyreg.db.artifacts import NewArtifact, record_artifacts
from lazyreg.db.engine import Database
from lazyreg.db.models import Artifact
from lazyreg.db.usage import UsageLog

A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def _rows(db: Database) -> dict[str, tuple[float | None, float | None]]:
    with db.read_session() as s:
        return {d: (u, b) for d, u, b in s.execute(
            select(Artifact.digest, Artifact.last_used, Artifact.busy_until))}


@pytest.fixture
def stored(db: Database) -> Database:
    with db.write_session() as s:
        record_artifacts(s, [NewArtifact(A, 1, "layer", "a"), NewArtifact(B, 1, "layer", "b")])
        s.execute(update(Artifact).values(last_used=None))
    return db


async def test_uses_are_written_at_the_flush_and_never_moved_back(stored: Database) -> None:
    log = UsageLog()
    log.used([A], when=100.0)
    log.used([A], when=200.0)
    assert _rows(stored)[A] == (None, None)  # nothing written before the flush
    assert await log.flush(stored, busy_for=10) == 1
    assert _rows(stored)[A] == (200.0, None)
    log.used([A], when=150.0)  # another process wrote 200: an older use does not win
    await log.flush(stored, busy_for=10)
    assert _rows(stored)[A][0] == 200.0
    assert await log.flush(stored, busy_for=10) == 0  # nothing new: no write


async def test_a_use_is_recent_until_the_flush_that_writes_it(stored: Database) -> None:
    log = UsageLog()
    assert not log.is_recent(A)
    log.used([A])
    assert log.is_recent(A) and not log.is_recent(B)
    await log.flush(stored, busy_for=10)
    assert not log.is_recent(A)  # the database knows it now
    with log.sending(B):
        await log.flush(stored, busy_for=10)
        assert log.is_recent(B)


async def test_a_blob_being_sent_is_busy_until_it_ends(stored: Database) -> None:
    log = UsageLog()
    with log.sending(A):
        assert log.is_sending(A)
        await log.flush(stored, busy_for=30)
        until = _rows(stored)[A][1]
        assert until is not None and until > time.time() + 20
        await log.flush(stored, busy_for=30)
        assert _rows(stored)[A][1] == until  # not renewed before half of it is gone
    assert not log.is_sending(A)
    await log.flush(stored, busy_for=30)
    assert _rows(stored)[A][1] is None


async def test_a_busy_mark_renewed_by_another_process_is_not_cleared(stored: Database) -> None:
    log = UsageLog()
    with log.sending(B):
        await log.flush(stored, busy_for=30)
    with stored.write_session() as s:  # another process sends it too, and renewed the mark
        s.execute(update(Artifact).where(Artifact.digest == B).values(busy_until=9e9))
    await log.flush(stored, busy_for=30)
    assert _rows(stored)[B][1] == 9e9


async def test_the_log_is_bounded_and_a_failed_flush_keeps_its_uses(stored: Database) -> None:
    log = UsageLog(max_entries=1)
    log.used([A, B], when=5.0)
    assert (log.pending, log.dropped) == (1, 1)
    stored.dispose()
    broken = Database("sqlite:////nonexistent/dir/x.db")
    with pytest.raises(Exception):  # noqa: B017 -- whatever the driver raises
        await log.flush(broken, busy_for=10)
    assert log.pending == 1
    await log.flush(stored, busy_for=10)
    assert _rows(stored)[A][0] == 5.0
