"""Blob traffic of the whole deployment, from counters every server process adds to.

Each process counts in memory and adds what it counted since its last flush
(`add`, every few seconds) to the row of each minute it counted in and to the
all-time row (minute ALL_TIME), with one upsert a row; so every node reads the
same figures (`read`). Rows older than KEEP_MINUTES are purged as rows are
added, so the table holds at most KEEP_MINUTES + 2 rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from sqlalchemy import Table, delete, select
from sqlalchemy.orm import Session

from lazyreg.db.engine import upsert
from lazyreg.db.models import TrafficMinute

ALL_TIME = -1
KEEP_MINUTES = 60


@dataclass
class Counts:
    hits: int = 0  # blob GETs answered from storage
    joins: int = 0  # blob GETs that joined a download in flight (here or on another node)
    misses: int = 0  # blob GETs that started a download from the upstream
    storage_bytes: int = 0  # bytes sent from storage
    joined_bytes: int = 0  # bytes sent from a download the request joined
    upstream_bytes: int = 0  # bytes sent from a download the request started
    fetched_bytes: int = 0  # blob bytes received from upstreams (downloads and syncs)

    def add(self, other: Counts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def any(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    @property
    def requests(self) -> int:
        return self.hits + self.joins + self.misses

    @property
    def saved_bytes(self) -> int:
        """Bytes the upstream did not have to send: served from storage or a joined download."""
        return self.storage_bytes + self.joined_bytes

    @property
    def hit_ratio(self) -> float | None:
        """Blob GETs that started no download (hits and joins) over all; None before one."""
        return (self.hits + self.joins) / self.requests if self.requests else None


NAMES = tuple(f.name for f in fields(Counts))


def add(session: Session, by_minute: Mapping[int, Counts]) -> None:
    """Add what a process counted, per minute (epoch seconds // 60), and to the all-time row."""
    total = Counts()
    for counts in by_minute.values():
        total.add(counts)
    rows = {**by_minute, ALL_TIME: total}
    insert = upsert(session)
    table = TrafficMinute.__table__
    assert isinstance(table, Table)
    for minute in sorted(rows):  # one order in every process: no deadlock between them
        values = {name: getattr(rows[minute], name) for name in NAMES}
        stmt = insert(table).values(minute=minute, **values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["minute"],
            set_={name: table.c[name] + stmt.excluded[name] for name in NAMES})
        session.execute(stmt)
    newest = max(by_minute, default=None)
    if newest is not None:
        session.execute(delete(TrafficMinute).where(TrafficMinute.minute != ALL_TIME,
                                                    TrafficMinute.minute <= newest - KEEP_MINUTES))


def read(session: Session, now_minute: int) -> tuple[Counts, list[Counts]]:
    """(all time, one `Counts` per minute of the last KEEP_MINUTES, oldest first)."""
    first = now_minute - KEEP_MINUTES + 1
    found: dict[int, Counts] = {}
    for row in session.scalars(select(TrafficMinute).where(
            (TrafficMinute.minute == ALL_TIME) | (TrafficMinute.minute >= first))):
        found[row.minute] = Counts(**{name: int(getattr(row, name)) for name in NAMES})
    return (found.get(ALL_TIME, Counts()),
            [found.get(m, Counts()) for m in range(first, now_minute + 1)])
