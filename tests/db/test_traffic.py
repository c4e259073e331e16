"""The deployment's blob traffic: counts every process adds, per minute and all time."""

from __future__ import annotations

from sqlalchemy import select

from lazyreg.db import traffic
from lazyreg.db.engine import Database, head_revision, is_current
from lazyreg.db.models import TrafficMinute
from lazyreg.db.traffic import Counts


def test_processes_add_up_per_minute_and_all_time(db: Database) -> None:
    with db.write_session() as s:  # one process
        traffic.add(s, {100: Counts(hits=2, storage_bytes=20), 101: Counts(misses=1)})
    with db.write_session() as s:  # another one, same minute
        traffic.add(s, {101: Counts(joins=19, joined_bytes=190)})
    with db.read_session() as s:
        total, minutes = traffic.read(s, 101)
    assert total == Counts(hits=2, joins=19, misses=1, storage_bytes=20, joined_bytes=190)
    assert len(minutes) == traffic.KEEP_MINUTES
    assert minutes[-1] == Counts(joins=19, misses=1, joined_bytes=190)
    assert minutes[-2] == Counts(hits=2, storage_bytes=20)
    assert total.saved_bytes == 210
    assert total.hit_ratio == 21 / 22  # hits and joins started no download


def test_old_minutes_are_purged_and_all_time_stays(db: Database) -> None:
    with db.write_session() as s:
        traffic.add(s, {10: Counts(hits=1)})
    with db.write_session() as s:
        traffic.add(s, {10 + traffic.KEEP_MINUTES: Counts(hits=1)})
    with db.read_session() as s:
        total, minutes = traffic.read(s, 10 + traffic.KEEP_MINUTES)
        rows = s.execute(select(TrafficMinute.minute)).scalars().all()
    assert total.hits == 2 and sum(m.hits for m in minutes) == 1
    assert sorted(rows) == [traffic.ALL_TIME, 10 + traffic.KEEP_MINUTES]


def test_the_schema_is_current_without_alembic(db: Database) -> None:
    assert head_revision() is not None
    assert is_current(db.write_engine)
