"""Single flight between server processes for small blobs, repeated until a race would show.

Three `lazyreg serve` processes share one PostgreSQL database and one data
directory (and, on SQLite, the two workers of `lazyreg serve --workers 2`).
Each round deletes the stored layers (reclaim) and has clients on
every process ask for the same small layers at once; the upstream's access log
must show one GET per layer per round. A small blob is fetched in a few
milliseconds, so a process that checks "stored?" before it locks the lease can
find the lease finished by another process and download the blob a second time:
this test caught that (an 18 KiB layer fetched twice in about half the rounds).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.expect import layers
from tests.rig import Lazyreg, Upstream, start_lazyreg

pytestmark = pytest.mark.e2e

ROUNDS = 8
CLIENTS_PER_SERVER = 3


def _settle(upstream: Upstream, digests: list[str], mark: int) -> None:
    """Until the upstream has logged a GET of each digest and its log stopped growing: the
    registry writes a request's line once it has sent the body, after our clients may
    have had every byte."""
    deadline = time.monotonic() + 15
    last, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        size = upstream.mark()
        if size != last:
            last, quiet_since = size, time.monotonic()
        logged = all(upstream.count("GET", f"/blobs/{d}$", mark) for d in digests)
        if logged and time.monotonic() - quiet_since >= 0.5:
            return
        time.sleep(0.05)


def _stored(server: Lazyreg, digests: list[str]) -> None:
    """Until each layer's artifact row is written: a download records it after its last
    byte went out, so clients can have every byte a moment before."""
    deadline = time.monotonic() + 15
    while not set(digests) <= server.artifact_digests():
        assert time.monotonic() < deadline, "layers not recorded as stored"
        time.sleep(0.05)


async def _get_all(urls: list[str]) -> list[int]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        async def one(url: str) -> int:
            async with session.get(url) as resp:
                await resp.read()
                return resp.status
        return await asyncio.gather(*(one(u) for u in urls))


@pytest.mark.postgres
def test_small_layers_fetched_once_across_processes_every_round(
        postgres_url: str, upstream: Upstream, tmp_path: Path) -> None:
    servers = [start_lazyreg(tmp_path / "data", database_url=postgres_url) for _ in range(3)]
    _race(servers, upstream)


def test_small_layers_fetched_once_by_workers_on_sqlite(upstream: Upstream,
                                                        tmp_path: Path) -> None:
    """`--workers 2` on SQLite (WAL, busy timeout): the same rounds, no error, no lock."""
    server = start_lazyreg(tmp_path / "data", args=["--workers", "2"])
    _race([server, server], upstream, rounds=4)
    log = server.logfile.read_text()
    assert "database is locked" not in log and "Traceback" not in log


def _race(servers: list[Lazyreg], upstream: Upstream, rounds: int = ROUNDS) -> None:
    try:
        first = servers[0]
        assert first.setup_mirror(upstream, "small", "fixtures/small")["state"] == "completed"
        digests = sorted(layers(upstream.tag("fixtures/small", "v1")))
        twice: list[tuple[int, str, int]] = []
        for round_ in range(rounds):
            task = first.wait_task(first.ok("POST", "repositories/small/reclaim/"))
            assert task["state"] == "completed", task
            assert not set(digests) & first.artifact_digests()  # every layer is fetched anew
            mark = upstream.mark()
            urls = [f"{s.url}/v2/small/blobs/{d}" for d in digests for s in servers
                    for _ in range(CLIENTS_PER_SERVER)]
            assert set(asyncio.run(_get_all(urls))) == {200}
            _settle(upstream, digests, mark)
            _stored(first, digests)  # else the next reclaim may run before a row is written
            for digest in digests:
                gets = upstream.count("GET", f"/blobs/{digest}$", mark)
                if gets != 1:
                    twice.append((round_, digest[:19], gets))
        assert twice == [], f"(round, layer, upstream GETs) fetched more than once: {twice}"
        assert first.ok("GET", "check/")["ok"]
    finally:
        for server in servers:  # stop() twice is harmless
            server.stop()
