"""The login throttle's arithmetic, on a fake clock: growth, cap, forgetting, bounds."""

from __future__ import annotations

import pytest

from lazyreg.auth.throttle import (
    ACCOUNT_FREE_FAILURES,
    CLIENT,
    FORGET,
    FREE_FAILURES,
    LoginThrottle,
    Throttled,
    address_key,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(throttle: LoginThrottle, account: str = "admin") -> None:
    throttle.admit(account)
    throttle.failed(account)


def test_waits_double_past_the_free_failures_up_to_the_cap() -> None:
    clock = Clock()
    throttle = LoginThrottle(max_backoff=10, clock=clock)
    token = CLIENT.set("192.0.2.1")
    try:
        for _ in range(FREE_FAILURES - 1):
            fail(throttle)
            throttle.admit("other-account", charge=False)  # free: no wait
        waits = []
        for _ in range(7):
            fail(throttle)
            with pytest.raises(Throttled) as refused:
                throttle.admit("other-account")  # the address is held, whatever the name
            waits.append(refused.value.retry_after)
            clock.now += refused.value.retry_after
        assert waits == [1, 2, 4, 8, 10, 10, 10]
    finally:
        CLIENT.reset(token)


def test_refused_attempts_do_not_lengthen_the_wait_and_failures_are_forgotten() -> None:
    clock = Clock()
    throttle = LoginThrottle(max_backoff=60, clock=clock)
    token = CLIENT.set("192.0.2.2")
    try:
        for _ in range(FREE_FAILURES):
            fail(throttle)
        for _ in range(50):
            with pytest.raises(Throttled) as refused:
                throttle.admit("admin")
            assert refused.value.retry_after == 1
        clock.now += FORGET + 1
        for _ in range(FREE_FAILURES - 1):
            fail(throttle)  # afresh: free again
        throttle.admit("admin")
    finally:
        CLIENT.reset(token)


def test_tables_are_bounded_and_ipv6_counts_per_64() -> None:
    clock = Clock()
    throttle = LoginThrottle(max_backoff=60, max_entries=100, clock=clock)
    for i in range(1000):
        token = CLIENT.set(f"10.0.{i // 250}.{i % 250}")
        try:
            fail(throttle, f"user-{i}")
        finally:
            CLIENT.reset(token)
    assert len(throttle.addresses.rows) == 100 and len(throttle.accounts.rows) == 100
    assert address_key("2001:db8::1") == address_key("2001:db8::ffff") == "2001:db8::/64"
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert ACCOUNT_FREE_FAILURES > FREE_FAILURES
