"""When stored blobs were last used, noted in memory and written in batches.

Serving a blob must not cost a database write. `UsageLog` notes in memory
which blobs were used (sent to a client, or found stored by a sync) and which
are being sent right now; `flush` writes what changed since the last flush in
one short transaction:

- `last_used` of each artifact used, never moved back (another process may
  have written a later time): the bounded cache evicts the least recently used;
- `busy_until` of each blob being sent now, renewed before it runs out, so that
  an eviction in another process passes it over while the transfer lasts;
- for each blob this process marked busy and no longer sends, the mark cleared,
  unless another process renewed it meanwhile (it holds another value then).

Bounded: at most `max_entries` uses wait for a flush; past that, new ones are
dropped (and counted) until the next flush, which makes the LRU order a little
less exact and nothing worse. A flush that fails keeps its uses for the next.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import BindParameter, bindparam, case, update
from sqlalchemy.orm import Session

from lazyreg.db.content import chunked
from lazyreg.db.engine import Database
from lazyreg.db.models import Artifact

MAX_ENTRIES = 100_000  # digests waiting for a flush


@dataclass
class UsageBatch:
    used: dict[str, float] = field(default_factory=dict)  # digest -> when
    busy: dict[str, float] = field(default_factory=dict)  # digest -> busy until
    cleared: dict[str, float] = field(default_factory=dict)  # digest -> the mark we wrote

    def __bool__(self) -> bool:
        return bool(self.used or self.busy or self.cleared)


class UsageLog:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self.dropped = 0  # uses not recorded because the log was full
        self.sends_ended = 0  # transfers ended so far: what was busy may be evictable now
        self._used: dict[str, float] = {}
        self._sending: Counter[str] = Counter()
        self._marked: dict[str, float] = {}  # busy marks written and not cleared yet

    def used(self, digests: Iterable[str], when: float | None = None) -> None:
        now = time.time() if when is None else when
        for digest in digests:
            if digest in self._used or len(self._used) < self.max_entries:
                self._used[digest] = now
            else:
                self.dropped += 1

    @contextmanager
    def sending(self, digest: str) -> Iterator[None]:
        """While a blob goes to a client: it is used, and busy."""
        self._sending[digest] += 1
        self.used([digest])
        try:
            yield
        finally:
            self._sending[digest] -= 1
            if not self._sending[digest]:
                del self._sending[digest]
            self.used([digest])
            self.sends_ended += 1

    def is_sending(self, digest: str) -> bool:
        return digest in self._sending

    def is_recent(self, digest: str) -> bool:
        """Being sent, or used since the last flush (a use the database does not know yet)."""
        return digest in self._sending or digest in self._used

    @property
    def pending(self) -> int:
        return len(self._used)

    def take(self, now: float, busy_for: float) -> UsageBatch:
        """What to write now; the uses noted so far are handed over."""
        used, self._used = self._used, {}
        # A mark is renewed when less than half of it is left.
        busy = {d: now + busy_for for d in self._sending
                if self._marked.get(d, 0.0) < now + busy_for / 2}
        cleared = {d: t for d, t in self._marked.items() if d not in self._sending}
        return UsageBatch(used, busy, cleared)

    def written(self, batch: UsageBatch) -> None:
        for digest in batch.cleared:
            self._marked.pop(digest, None)
        self._marked.update(batch.busy)

    def give_back(self, batch: UsageBatch) -> None:
        """A batch that could not be written: its uses wait for the next flush."""
        for digest, when in batch.used.items():
            if when > self._used.get(digest, 0.0):
                self._used[digest] = when

    async def flush(self, db: Database, busy_for: float) -> int:
        """Write what changed since the last flush; the number of artifacts touched."""
        batch = self.take(time.time(), busy_for)
        if not batch:
            return 0
        try:
            await db.write(lambda s: write_usage(s, batch))
        except BaseException:
            self.give_back(batch)
            raise
        self.written(batch)
        return len(batch.used)


def write_usage(session: Session, batch: UsageBatch) -> None:
    conn = session.connection()
    a = Artifact
    when: BindParameter[float] = bindparam("when")
    used = (update(a).where(a.digest == bindparam("d"))
            .values(last_used=case((a.last_used > when, a.last_used), else_=when)))
    for rows in chunked([{"d": d, "when": t} for d, t in sorted(batch.used.items())], 500):
        conn.execute(used, rows)
    busy = update(a).where(a.digest == bindparam("d")).values(busy_until=bindparam("until"))
    for rows in chunked([{"d": d, "until": t} for d, t in sorted(batch.busy.items())], 500):
        conn.execute(busy, rows)
    cleared = (update(a).where(a.digest == bindparam("d"), a.busy_until == bindparam("mark"))
               .values(busy_until=None))
    for rows in chunked([{"d": d, "mark": t} for d, t in sorted(batch.cleared.items())], 500):
        conn.execute(cleared, rows)
