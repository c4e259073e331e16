"""In-memory answers to the registry's lookups, so that hot reads skip the database.

What a repository version holds never changes, so those answers are kept until
the least recently used go out to make room. Their keys carry the `Target`
(`lazyreg.registry.resolve`), which names the repository by its `uid`, never
reused: a deleted repository's answers can never be found again, even when a
new repository gets its database id, name and version numbers.

Which version a base path serves does change: that answer is fresh for `ttl`
seconds, and dropped at once when a change is published (by this process or,
through the change feed `lazyreg.db.changes`, by another). When it expires,
the requests that find it missing share one database read (`target_flight`)
rather than each making its own. An expired answer stays kept (`kept_target`)
until it is dropped or replaced: while the database is unreachable, the
caller may serve it, within the feed's grace.

Memory is bounded twice: at most `max_entries` answers, and at most
`max_bytes` by their estimated cost (a value's own size for bytes, a flat
`ENTRY_COST` for small records). A value too big for an eighth of the budget
is not kept at all.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Hashable
from typing import Any

# What one small answer costs, rounded up: the key tuple, its strings, the value's
# dataclass and the dict slot (measured with tracemalloc: 380 to 750 bytes).
ENTRY_COST = 768
MAX_TARGETS = 4096


class LookupCache:
    def __init__(self, ttl: float = 1.0, max_bytes: int = 64 * 1024 * 1024,
                 max_entries: int = 65536, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._clock = clock
        self._targets: dict[str, tuple[float, Any]] = {}
        # Bumped by every invalidation, so that a lookup which read the database
        # before a change cannot put its stale answer back afterwards.
        self.generation = 0
        # base path -> the one read of its target in flight (since the last invalidation)
        self._flights: dict[str, asyncio.Future[Any]] = {}
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0

    # ------------------------------------------------------------ base path -> target

    def target(self, base_path: str) -> Any | None:
        entry = self._targets.get(base_path)
        if entry is None or entry[0] < self._clock():
            return None
        return entry[1]

    def kept_target(self, base_path: str) -> Any | None:
        """The last answer for `base_path`, fresh or not, unless a change dropped it."""
        entry = self._targets.get(base_path)
        return None if entry is None else entry[1]

    def put_target(self, base_path: str, target: Any, generation: int | None = None) -> None:
        """Keep `target` for `ttl` seconds, unless an invalidation came after `generation`."""
        if generation is not None and generation != self.generation:
            return
        if len(self._targets) >= MAX_TARGETS:
            self._targets.clear()
        self._targets[base_path] = (self._clock() + self.ttl, target)

    def target_flight(self, base_path: str,
                      read: Callable[[], Coroutine[Any, Any, Any]]) -> asyncio.Future[Any]:
        """The read of `base_path`'s target in flight, started with `read()` if there is
        none; its answer is kept as `put_target` keeps it.

        Await it shielded: a waiter that is cancelled must not cancel the others' read.
        """
        flight = self._flights.get(base_path)
        if flight is not None:
            return flight
        generation = self.generation
        flight = asyncio.ensure_future(read())
        self._flights[base_path] = flight

        def landed(done: asyncio.Future[Any]) -> None:
            if self._flights.get(base_path) is done:
                del self._flights[base_path]
            if not done.cancelled() and done.exception() is None:
                self.put_target(base_path, done.result(), generation)
        flight.add_done_callback(landed)
        return flight

    def invalidate_targets(self) -> None:
        self.generation += 1
        self._targets.clear()
        self._flights.clear()  # a lookup from now on reads anew; earlier ones keep their read

    # ------------------------------------------------------------ answers that never change

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> Any | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: Hashable, value: Any, cost: int | None = None) -> None:
        """Keep `value`; `cost` in bytes defaults to its length for bytes, else ENTRY_COST."""
        if cost is None:
            cost = len(value) + ENTRY_COST if isinstance(value, bytes) else ENTRY_COST
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        if cost > self.max_bytes // 8:
            return
        self._entries[key] = (value, cost)
        self._bytes += cost
        while self._bytes > self.max_bytes or len(self._entries) > self.max_entries:
            _, (_, dropped) = self._entries.popitem(last=False)
            self._bytes -= dropped
