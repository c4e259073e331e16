import time

from lazyreg.cache import LookupCache


def test_targets_expire_and_can_be_dropped() -> None:
    cache = LookupCache(ttl=0.05)
    cache.put_target("a", 1)
    assert cache.target("a") == 1
    time.sleep(0.06)
    assert cache.target("a") is None
    cache.put_target("a", 2)
    cache.invalidate_targets()
    assert cache.target("a") is None


def test_entries_are_least_recently_used_out() -> None:
    cache = LookupCache(size=2)
    cache.put("x", 1)
    cache.put("y", 2)
    assert cache.get("x") == 1  # x is now the most recent
    cache.put("z", 3)
    assert cache.get("y") is None
    assert (cache.get("x"), cache.get("z")) == (1, 3)
