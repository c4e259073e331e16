import asyncio

import pytest

from lazyreg.cache import ENTRY_COST, LookupCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_targets_expire_after_ttl() -> None:
    clock = Clock()
    cache = LookupCache(ttl=1.0, clock=clock)
    cache.put_target("a", 1)
    clock.now += 0.99
    assert cache.target("a") == 1
    clock.now += 0.02
    assert cache.target("a") is None


def test_invalidation_drops_targets_and_refuses_answers_read_before_it() -> None:
    cache = LookupCache()
    cache.put_target("a", 1)
    cache.invalidate_targets()
    assert cache.target("a") is None

    # A lookup read the database, then a change was made and invalidated: the
    # lookup's answer is stale and must not come back.
    seen = cache.generation
    cache.invalidate_targets()
    cache.put_target("a", "stale", seen)
    assert cache.target("a") is None
    cache.put_target("a", "fresh", cache.generation)
    assert cache.target("a") == "fresh"


class Reads:
    """A database read that answers when the test says so, counting how often it ran."""

    def __init__(self) -> None:
        self.count = 0
        self.answer: asyncio.Future[str] | None = None

    async def __call__(self) -> str:
        self.count += 1
        self.answer = asyncio.get_running_loop().create_future()
        return await self.answer


async def test_lookups_that_miss_together_share_one_read() -> None:
    clock, read = Clock(), Reads()
    cache = LookupCache(ttl=1.0, clock=clock)
    waiters = [asyncio.ensure_future(asyncio.shield(cache.target_flight("a", read)))
               for _ in range(16)]
    await asyncio.sleep(0)  # the read starts
    assert read.count == 1 and read.answer is not None
    read.answer.set_result("target")
    assert await asyncio.gather(*waiters) == ["target"] * 16
    assert cache.target("a") == "target"  # kept, as put_target keeps it
    clock.now += 2
    assert cache.target("a") is None
    flight = cache.target_flight("a", read)  # the next miss reads again
    await asyncio.sleep(0)
    assert read.count == 2 and read.answer is not None
    read.answer.set_result("next")
    assert await flight == "next"


async def test_a_failed_read_reaches_its_waiters_and_is_not_kept() -> None:
    cache, read = LookupCache(), Reads()
    waiters = [asyncio.ensure_future(asyncio.shield(cache.target_flight("a", read)))
               for _ in range(3)]
    await asyncio.sleep(0)
    assert read.answer is not None
    read.answer.set_exception(LookupError("no such name"))
    for waiter in waiters:
        with pytest.raises(LookupError):
            await waiter
    assert cache.target("a") is None
    cache.target_flight("a", read)
    await asyncio.sleep(0)
    assert read.count == 2  # a new read, not the failed one again


async def test_a_lookup_after_an_invalidation_does_not_join_a_read_from_before() -> None:
    cache, read = LookupCache(), Reads()
    before = cache.target_flight("a", read)
    await asyncio.sleep(0)
    first = read.answer
    cache.invalidate_targets()  # e.g. the distribution was changed meanwhile
    after = cache.target_flight("a", read)
    assert after is not before
    await asyncio.sleep(0)
    assert read.count == 2 and first is not None and read.answer is not None
    read.answer.set_result("fresh")
    first.set_result("stale")
    assert (await before, await after) == ("stale", "fresh")
    assert cache.target("a") == "fresh"  # the stale answer was not put back


async def test_a_cancelled_waiter_leaves_the_read_to_the_others() -> None:
    cache, read = LookupCache(), Reads()
    quitter = asyncio.ensure_future(asyncio.shield(cache.target_flight("a", read)))
    stayer = asyncio.ensure_future(asyncio.shield(cache.target_flight("a", read)))
    await asyncio.sleep(0)
    quitter.cancel()
    await asyncio.sleep(0)
    assert read.answer is not None
    read.answer.set_result("target")
    assert await stayer == "target"
    assert quitter.cancelled() and read.count == 1


def test_entries_are_least_recently_used_out() -> None:
    cache = LookupCache(max_entries=2)
    cache.put("x", 1)
    cache.put("y", 2)
    assert cache.get("x") == 1  # x is now the most recent
    cache.put("z", 3)
    assert cache.get("y") is None
    assert (cache.get("x"), cache.get("z")) == (1, 3)
    assert len(cache) == 2


def test_bytes_are_bounded_by_the_budget() -> None:
    budget = 1024 * 1024
    cache = LookupCache(max_bytes=budget)
    blob = b"m" * (100 * 1024)
    for i in range(100):  # 10 MB offered to a 1 MiB cache
        cache.put(("bytes", i), bytes(blob))
        assert cache.bytes <= budget
    kept = [i for i in range(100) if cache.get(("bytes", i)) is not None]
    assert kept == list(range(100 - len(kept), 100))  # the newest ones
    assert len(kept) == budget // (len(blob) + ENTRY_COST)
    assert cache.bytes == len(kept) * (len(blob) + ENTRY_COST)


def test_small_entries_count_against_the_budget_too() -> None:
    cache = LookupCache(max_bytes=100 * ENTRY_COST)
    for i in range(1000):
        cache.put(("small", i), i)
    assert len(cache) == 100
    assert cache.bytes == 100 * ENTRY_COST


def test_replacing_an_entry_does_not_count_it_twice() -> None:
    cache = LookupCache()
    cache.put("k", b"a" * 1000)
    cache.put("k", b"b" * 10)
    assert cache.bytes == 10 + ENTRY_COST
    assert cache.get("k") == b"b" * 10


def test_a_value_too_big_for_the_budget_is_not_kept() -> None:
    cache = LookupCache(max_bytes=8 * 1024)
    cache.put("small", b"s" * 100)
    cache.put("huge", b"h" * 2000)  # more than an eighth of the budget
    assert cache.get("huge") is None
    assert cache.get("small") == b"s" * 100
    # A key that held a value and is given one too big no longer answers the old one.
    cache.put("small", b"h" * 2000)
    assert cache.get("small") is None
    assert cache.bytes == 0
