"""The per-minute ring: what the last hour holds, and that it never grows."""

from __future__ import annotations

from lazyreg.observe.traffic import MinuteRing, Traffic


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000 * 60.0

    def __call__(self) -> float:
        return self.now


def test_hit_ratio() -> None:
    assert Traffic().hit_ratio is None
    assert Traffic(hits=5, misses=3).hit_ratio == 5 / 8


def test_ring_keeps_the_last_hour_per_minute() -> None:
    clock = Clock()
    ring = MinuteRing(60, clock)
    ring.now().hits += 2
    clock.now += 60
    ring.now().misses += 1
    series = ring.series()
    assert len(series) == 60
    assert (series[-2].hits, series[-1].misses) == (2, 1)
    assert ring.total() == Traffic(hits=2, misses=1)
    clock.now += 59 * 60  # the first minute is now 60 minutes old: gone
    assert ring.total() == Traffic(misses=1)
    clock.now += 60
    assert ring.total() == Traffic()


def test_ring_is_bounded_however_long_it_runs() -> None:
    clock = Clock()
    ring = MinuteRing(60, clock)
    for _ in range(10_000):
        ring.now().hits += 1
        ring.now().storage_bytes += 10
        clock.now += 60
    assert len(ring._slots) == 60
    clock.now -= 60  # the last minute written is the current one
    assert ring.total() == Traffic(hits=60, storage_bytes=600)


def test_a_slot_reused_after_a_gap_starts_from_zero() -> None:
    clock = Clock()
    ring = MinuteRing(60, clock)
    ring.now().hits += 7
    clock.now += 60 * 60  # same slot, an hour later
    ring.now().hits += 1
    assert ring.total().hits == 1
