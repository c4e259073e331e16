"""A fixed number of workers over a stream of items, some of which bring more items.

However many items there are, at most `workers` coroutines run: a million tags
are a million queue entries, not a million tasks. The first exception stops
every worker and is raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


async def drain(items: Iterable[T], work: Callable[[T], Awaitable[Iterable[T] | None]],
                workers: int) -> None:
    """Run `work` on every item, and on every item a `work` returns, `workers` at a time."""
    queue: list[T] = list(items)
    queue.reverse()  # popped from the end: first in, first done
    busy = 0
    wake = asyncio.Event()

    async def worker() -> None:
        nonlocal busy
        while True:
            if not queue:
                if busy == 0:
                    wake.set()
                    return
                wake.clear()
                await wake.wait()
                continue
            item = queue.pop()
            busy += 1
            try:
                more = await work(item)
            finally:
                busy -= 1
            if more:
                queue[:0] = reversed(list(more))
            wake.set()

    tasks = [asyncio.create_task(worker()) for _ in range(max(1, workers))]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()  # the first failure, as itself
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
