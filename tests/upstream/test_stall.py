"""The stall rule and capped reads, against small in-memory streams."""

from __future__ import annotations

import asyncio

import pytest

from lazyreg.upstream.errors import Stalled, TooLarge
from lazyreg.upstream.stall import GuardedReader, Meter, StallRule, read_capped


class Drip:
    """A stream handing out `size` bytes at a time, `delay` seconds apart; forever if endless."""

    def __init__(self, size: int, delay: float, total: int | None = None) -> None:
        self.size, self.delay, self.left = size, delay, total
        self.handed = 0

    async def read(self, n: int = -1) -> bytes:
        await asyncio.sleep(self.delay)
        size = min(self.size, n)
        if self.left is not None:
            size = min(size, self.left)
            self.left -= size
        self.handed += size
        return b"x" * size


class Silent:
    async def read(self, n: int = -1) -> bytes:
        await asyncio.Event().wait()
        return b""


def test_meter_counts_the_recent_window_only() -> None:
    rule = StallRule(min_rate=100, timeout=10)
    meter = Meter(rule, now=0.0)
    assert not meter.stalled(5.0)  # too early to judge
    meter.add(2000, now=1.0)
    assert not meter.stalled(10.5)  # 2000 bytes in the last 10 s: 200 B/s
    # With nothing more, the 2000 bytes leave the window a little after 11 s.
    assert 11.0 <= meter.deadline(10.5) <= 12.5
    assert meter.stalled(13.0)


def test_meter_deadline_of_a_slow_transfer_is_the_window_end() -> None:
    meter = Meter(StallRule(min_rate=100, timeout=10), now=0.0)
    meter.add(10, now=1.0)
    assert meter.deadline(2.0) == 10.0


async def test_a_drip_feed_stalls_after_the_timeout() -> None:
    rule = StallRule(min_rate=1024, timeout=0.5)
    reader = GuardedReader(Drip(1, 0.02), rule, "blob x")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(Stalled, match="blob x: slower than 1024 bytes/s"):
        while await reader.read(65536):
            pass
    assert 0.5 <= loop.time() - started < 1.5


async def test_a_silent_stream_stalls_without_any_byte() -> None:
    reader = GuardedReader(Silent(), StallRule(min_rate=1, timeout=0.3), "tag list")
    with pytest.raises(Stalled):
        await reader.read(10)


async def test_a_fast_stream_is_untouched() -> None:
    reader = GuardedReader(Drip(4096, 0.001, total=400_000), StallRule(1024, 0.2), "blob")
    got = 0
    while chunk := await reader.read(65536):
        got += len(chunk)
    assert got == 400_000


async def test_read_capped_stops_an_endless_body_at_the_cap() -> None:
    stream = Drip(65536, 0)
    with pytest.raises(TooLarge, match="more than the limit of 100000 bytes"):
        await read_capped(stream, {}, 100_000, StallRule(), 10, "config")
    assert stream.handed == 100_001  # never asked for more than one byte past the cap


async def test_read_capped_refuses_a_declared_length_over_the_cap_without_reading() -> None:
    stream = Drip(10, 0)
    with pytest.raises(TooLarge, match="is 5000 bytes"):
        await read_capped(stream, {"Content-Length": "5000"}, 4096, StallRule(), 10, "token")
    assert stream.handed == 0


async def test_read_capped_reads_a_body_in_many_small_pieces_whole() -> None:
    data = await read_capped(Drip(7, 0, total=70_000), {}, 4 * 1024 * 1024,
                             StallRule(min_rate=0), 10, "manifest")
    assert len(data) == 70_000


async def test_read_capped_has_a_time_limit_even_above_the_minimum_rate() -> None:
    # 100 KB/s is well above min_rate, but the whole body must come within the limit.
    with pytest.raises(Stalled, match="not received in time"):
        await read_capped(Drip(1000, 0.01), {}, 10**9, StallRule(min_rate=1, timeout=30),
                          0.3, "manifest")


async def test_min_rate_zero_turns_the_rule_off_without_spinning() -> None:
    meter = Meter(StallRule(min_rate=0, timeout=1), now=0.0)
    assert meter.deadline(5.0) == float("inf") and not meter.stalled(5.0)
    reader = GuardedReader(Drip(1, 0.05, total=3), StallRule(min_rate=0, timeout=0.01), "x")
    assert [await reader.read(10) for _ in range(4)] == [b"x", b"x", b"x", b""]
