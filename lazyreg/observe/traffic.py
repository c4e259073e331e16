"""One process's blob traffic: overall, and per minute over the last hour.

`Traffic` is a few counters (`lazyreg.db.traffic.Counts`: what the database
adds up for every process); `MinuteRing` keeps one `Traffic` per minute for
the last `minutes` minutes in a fixed list (a slot is reused when its minute
comes round again), so memory stays bounded however long the server runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from lazyreg.db.traffic import Counts

# One set of counters, whether one process's (here) or every process's (the database).
Traffic = Counts


class MinuteRing:
    """Per-minute `Traffic` for the last `minutes` minutes (the current one included)."""

    def __init__(self, minutes: int = 60, clock: Callable[[], float] = time.time) -> None:
        self.minutes = minutes
        self.clock = clock
        self._slots: list[tuple[int, Traffic]] = [(-1, Traffic()) for _ in range(minutes)]

    def _minute(self) -> int:
        return int(self.clock() // 60)

    def now(self) -> Traffic:
        """The current minute's counters, to add to."""
        minute = self._minute()
        index = minute % self.minutes
        slot_minute, traffic = self._slots[index]
        if slot_minute != minute:
            traffic = Traffic()
            self._slots[index] = (minute, traffic)
        return traffic

    def series(self) -> list[Traffic]:
        """One `Traffic` per minute, oldest first, the current minute last."""
        minute = self._minute()
        out = []
        for m in range(minute - self.minutes + 1, minute + 1):
            slot_minute, traffic = self._slots[m % self.minutes]
            out.append(traffic if slot_minute == m else Traffic())
        return out

    def total(self) -> Traffic:
        total = Traffic()
        for traffic in self.series():
            total.add(traffic)
        return total
