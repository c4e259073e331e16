"""Issue 20, finding 4: failed logins are throttled per client address and per account.

A real server (in process, real SQLite, real argon2) and clients on several
loopback addresses (127.0.0.0/8 is all loopback: a client binds its own source
address), so that an attacker and a real user are told apart as on a network.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from lazyreg.app import create_app
from lazyreg.auth.throttle import ACCOUNT_FREE_FAILURES, FREE_FAILURES
from lazyreg.config import Settings
from tests.api.conftest import API, Client
from tests.sqlite import seeded

PASSWORD = "admin-secret-1"
MAX_BACKOFF = 2.0


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
async def secure(tmp_path: Path, template: Path) -> AsyncIterator[Client]:
    settings = Settings(data_dir=seeded(tmp_path, template), auth="on", admin_password=PASSWORD,
                        login_max_backoff=MAX_BACKOFF)
    async with TestClient(TestServer(create_app(settings))) as client:
        yield client


class From:
    """A client whose requests come from one loopback address."""

    def __init__(self, server: Client, address: str) -> None:
        self.base = str(server.make_url("")).rstrip("/")
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=(address, 0), force_close=True))

    async def get(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        async with self.session.get(self.base + path, headers=headers) as resp:
            await resp.read()
            return resp.status, dict(resp.headers)

    async def close(self) -> None:
        await self.session.close()


async def clients(server: Client, *addresses: str) -> list[From]:
    return [From(server, a) for a in addresses]


async def test_a_client_that_keeps_guessing_gets_a_few_checks_then_429(
        secure: Client, caplog: pytest.LogCaptureFixture) -> None:
    [attacker, user] = await clients(secure, "127.0.0.2", "127.0.0.3")
    try:
        statuses: list[int] = []
        waits: list[int] = []
        with caplog.at_level(logging.INFO, logger="lazyreg.auth"):
            # 16 guesses at once: charged as they are admitted, so only the free ones run.
            burst = await asyncio.gather(*(attacker.get(f"{API}/remotes/",
                                                        basic("admin", f"guess-{i}"))
                                           for i in range(16)))
            assert sorted(s for s, _ in burst).count(401) == FREE_FAILURES
            statuses += [s for s, _ in burst]
            # Then one guess after another, as fast as answers come, for 5 s.
            deadline = time.monotonic() + 5
            i = 0
            while time.monotonic() < deadline:
                status, headers = await attacker.get(f"{API}/remotes/",
                                                     basic("admin", f"again-{i}"))
                statuses.append(status)
                if status == 429:
                    waits.append(int(headers["Retry-After"]))
                i += 1
        checked = statuses.count(401)
        # 5 free, then 1 s, 2 s (capped at MAX_BACKOFF) apart: in 5 s at most 5 + 3.
        assert FREE_FAILURES < checked <= FREE_FAILURES + 4, checked
        assert statuses.count(429) == len(statuses) - checked > 30
        assert waits and max(waits) <= MAX_BACKOFF
        messages = [r.getMessage() for r in caplog.records if r.name == "lazyreg.auth"]
        assert sum("login failed for 'admin' from 127.0.0.2" in m for m in messages) == checked
        assert sum("login refused for 'admin' from 127.0.0.2" in m for m in messages) == (
            statuses.count(429))
        assert not any("guess" in m or "again" in m for m in messages)  # no password
        # The account saw fewer failures than it allows: its user, elsewhere, is not held up.
        assert checked < ACCOUNT_FREE_FAILURES
        assert (await user.get(f"{API}/remotes/", basic("admin", PASSWORD)))[0] == 200
    finally:
        for c in (attacker, user):
            await c.close()


async def test_a_spread_attack_cannot_lock_a_real_user_out_longer_than_the_backoff(
        secure: Client) -> None:
    attackers = await clients(secure, *(f"127.0.1.{i}" for i in range(1, 25)))
    [known, newcomer] = await clients(secure, "127.0.0.5", "127.0.0.6")
    try:
        assert (await known.get(f"{API}/remotes/", basic("admin", PASSWORD)))[0] == 200
        # One guess from each of 24 addresses: past the account's free failures.
        answers = await asyncio.gather(*(a.get(f"{API}/remotes/", basic("admin", "guess"))
                                         for a in attackers))
        assert {s for s, _ in answers} <= {401, 429}
        assert [s for s, _ in answers].count(401) >= ACCOUNT_FREE_FAILURES
        # An address that logged in as admin lately is not refused for others' failures.
        assert (await known.get(f"{API}/remotes/", basic("admin", PASSWORD)))[0] == 200
        # A new address waits, but no longer than the stated backoff, however the
        # attackers go on meanwhile (their refused guesses do not lengthen the wait).
        status, headers = await newcomer.get(f"{API}/remotes/", basic("admin", PASSWORD))
        assert status == 429 and 1 <= int(headers["Retry-After"]) <= MAX_BACKOFF
        started = time.monotonic()
        refused = await asyncio.gather(*(a.get(f"{API}/remotes/", basic("admin", "guess"))
                                         for a in attackers[:5]))
        assert {s for s, _ in refused} == {429}
        await asyncio.sleep(int(headers["Retry-After"]) - (time.monotonic() - started))
        assert (await newcomer.get(f"{API}/remotes/", basic("admin", PASSWORD)))[0] == 200
        # The 429 does not tell names that exist from names that do not.
        for a in attackers[5:]:
            await a.get(f"{API}/remotes/", basic("nobody", "guess"))
        status, _ = await newcomer.get(f"{API}/remotes/", basic("nobody", "guess"))
        assert status == 429
    finally:
        for c in (*attackers, known, newcomer):
            await c.close()


async def test_unknown_user_and_wrong_password_take_the_same_time(secure: Client) -> None:
    timings: dict[str, list[float]] = {"unknown": [], "wrong": []}
    probes = await clients(secure, *(f"127.0.2.{i}" for i in range(1, 17)))
    try:
        for i, probe in enumerate(probes):  # one guess per address: never throttled
            kind = "unknown" if i % 2 else "wrong"
            user = f"nobody-{i}" if kind == "unknown" else "admin"
            started = time.perf_counter()
            status, _ = await probe.get(f"{API}/remotes/", basic(user, "guess"))
            timings[kind].append(time.perf_counter() - started)
            assert status == 401
    finally:
        for c in probes:
            await c.close()
    ratio = statistics.median(timings["unknown"]) / statistics.median(timings["wrong"])
    assert 0.5 < ratio < 2.0, timings




async def test_right_passwords_sent_at_once_all_pass(secure: Client) -> None:
    [script] = await clients(secure, "127.0.0.7")
    try:
        answers = await asyncio.gather(*(script.get(f"{API}/remotes/", basic("admin", PASSWORD))
                                         for _ in range(16)))
        assert [s for s, _ in answers] == [200] * 16
    finally:
        await script.close()
