"""A fixed pool of workers over many items."""

from __future__ import annotations

import asyncio

import pytest

from lazyreg.sync.workers import drain


async def test_at_most_n_items_run_at_once_however_many_there_are() -> None:
    running = peak = 0
    done: list[int] = []

    async def work(item: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)
        running -= 1
        done.append(item)
    tasks_before = len(asyncio.all_tasks())
    await drain(range(20_000), work, 16)
    assert sorted(done) == list(range(20_000))
    assert peak == 16
    assert len(asyncio.all_tasks()) == tasks_before


async def test_items_may_bring_more_items() -> None:
    seen: list[int] = []

    async def work(item: int) -> list[int]:
        seen.append(item)
        return [item * 2, item * 2 + 1] if item < 8 else []
    await drain([1], work, 4)
    assert sorted(seen) == list(range(1, 16))


async def test_the_first_failure_stops_the_others_and_is_raised_as_itself() -> None:
    started: list[int] = []

    async def work(item: int) -> None:
        started.append(item)
        if item == 3:
            raise ValueError("boom")
        await asyncio.sleep(0.01)
    with pytest.raises(ValueError, match="boom"):
        await drain(range(1000), work, 4)
    assert len(started) < 100
