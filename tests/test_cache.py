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
