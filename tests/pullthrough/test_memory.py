"""The bounded, expiring memory of confirmed tags and failed references."""

from __future__ import annotations

from lazyreg.pullthrough.memory import Expiring


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_and_a_zero_ttl_keeps_nothing() -> None:
    clock = Clock()
    memory: Expiring[str] = Expiring(10, clock)
    memory.put("a", "404", 30)
    memory.put("b", "down", 0)
    assert (memory.get("a"), memory.get("b")) == ("404", None)
    clock.now += 29.9
    assert memory.get("a") == "404"
    clock.now += 0.1
    assert memory.get("a") is None and len(memory) == 0


def test_at_most_max_entries_the_oldest_go_first() -> None:
    memory: Expiring[int] = Expiring(3, Clock())
    for i in range(5):
        memory.put(i, i, 60)
    assert len(memory) == 3
    assert [memory.get(i) for i in range(5)] == [None, None, 2, 3, 4]
    memory.put(2, 20, 60)  # stored again: now the newest
    memory.put(5, 5, 60)
    assert [memory.get(i) for i in (2, 3, 4, 5)] == [20, None, 4, 5]
    memory.forget(4)
    assert memory.get(4) is None
