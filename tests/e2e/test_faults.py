"""Lazy fetch under stress and faults: single flight, detached fill, resume, quarantine, crashes.

The faults come from the rig's fault proxy (`upstream faults`) placed between
lazyreg and the real registry; upstream requests are counted in the registry's
own access log.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.expect import layers
from tests.faultproxy import RetryAfterProxy, running
from tests.rig import (
    FaultProxy,
    Lazyreg,
    Upstream,
    dir_blobs,
    http_json,
    skopeo_copy,
    start_lazyreg,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def faults(upstream: Upstream, tmp_path: Path) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream.url, tmp_path / "faults.log")
    yield proxy
    proxy.stop()


def via(proxy_url: str, upstream: Upstream) -> Upstream:
    """The upstream as lazyreg sees it: through a proxy, with the same ground truth."""
    return Upstream(upstream.dir, proxy_url, upstream.info, upstream.index)


def big_layer(upstream: Upstream) -> tuple[str, int]:
    digest = next(iter(layers(upstream.tag("fixtures/big", "latest"))))
    return digest, upstream.index["blobs"][digest]


def blob_gets(upstream: Upstream, digest: str, since: int) -> list[int]:
    """Statuses of the upstream's GETs of one blob since `since`."""
    return [status for method, path, status in upstream.requests(since)
            if method == "GET" and path.endswith(digest)]


async def _pull(url: str, session: aiohttp.ClientSession) -> tuple[str, float, float]:
    """(sha256, time of first byte, time of last byte)."""
    h = hashlib.sha256()
    first = 0.0
    async with session.get(url) as resp:
        assert resp.status == 200, resp.status
        async for chunk in resp.content.iter_chunked(1 << 20):
            if not first:
                first = time.monotonic()
            h.update(chunk)
    return "sha256:" + h.hexdigest(), first, time.monotonic()


async def _pull_many(urls: list[str]) -> list[tuple[str, float, float]]:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        return await asyncio.gather(*(_pull(u, session) for u in urls))


def _wait_stored(server: Lazyreg, digest: str, timeout: float = 60) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if digest in server.artifact_digests():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{digest} was not stored within {timeout}s")


def test_50_clients_one_upstream_download_first_bytes_early(
        lazyreg: Lazyreg, upstream: Upstream, faults: FaultProxy) -> None:
    faults.configure(rate_kib=32 * 1024, reset=True)  # 64 MiB in about 2 s
    lazyreg.setup_mirror(via(faults.url, upstream), "mirror", "fixtures/big")
    digest, _ = big_layer(upstream)
    mark = upstream.mark()
    started = time.monotonic()
    results = asyncio.run(_pull_many([f"{lazyreg.url}/v2/mirror/blobs/{digest}"] * 50))
    elapsed = time.monotonic() - started
    assert all(r[0] == digest for r in results)
    assert blob_gets(upstream, digest, mark) == [200]
    # Every client had its first byte before any client (and so the download) was done.
    assert max(r[1] for r in results) < min(r[2] for r in results)
    print(f"\n50 clients x 64 MiB: {elapsed:.2f}s, upstream blob GETs: 1,"
          f" last first-byte at {max(r[1] for r in results) - started:.2f}s")


def test_two_server_processes_share_one_download(
        lazyreg: Lazyreg, upstream: Upstream, faults: FaultProxy) -> None:
    faults.configure(rate_kib=32 * 1024, reset=True)
    lazyreg.setup_mirror(via(faults.url, upstream), "mirror", "fixtures/big")
    second = start_lazyreg(lazyreg.data_dir)  # same database, same storage
    try:
        digest, _ = big_layer(upstream)
        mark = upstream.mark()
        urls = [f"{s.url}/v2/mirror/blobs/{digest}" for s in (lazyreg, second)] * 10
        results = asyncio.run(_pull_many(urls))
        assert all(r[0] == digest for r in results)
        assert blob_gets(upstream, digest, mark) == [200]
    finally:
        second.stop()


def test_client_that_leaves_does_not_stop_the_cache_fill(
        lazyreg: Lazyreg, upstream: Upstream, faults: FaultProxy) -> None:
    faults.configure(rate_kib=16 * 1024, reset=True)  # about 4 s
    lazyreg.setup_mirror(via(faults.url, upstream), "mirror", "fixtures/big")
    digest, _ = big_layer(upstream)
    mark = upstream.mark()
    with urllib.request.urlopen(f"{lazyreg.url}/v2/mirror/blobs/{digest}") as resp:
        assert len(resp.read(1024 * 1024)) == 1024 * 1024
    # the client is gone; the download goes on and lands
    waited = _wait_stored(lazyreg, digest)
    assert blob_gets(upstream, digest, mark) == [200]
    mark = upstream.mark()
    with urllib.request.urlopen(f"{lazyreg.url}/v2/mirror/blobs/{digest}") as resp:
        assert "sha256:" + hashlib.sha256(resp.read()).hexdigest() == digest
    assert upstream.requests(mark) == []
    print(f"\nclient left after 1 MiB; blob stored {waited:.1f}s later;"
          " next pull: 0 upstream requests")


def test_cut_connection_is_resumed_with_range(
        lazyreg: Lazyreg, upstream: Upstream, faults: FaultProxy, tmp_path: Path) -> None:
    lazyreg.setup_mirror(via(faults.url, upstream), "mirror", "fixtures/big")
    faults.configure(cut_after=10 * 1024 * 1024, times=1, reset=True)
    digest, _ = big_layer(upstream)
    mark = upstream.mark()
    skopeo_copy(f"{lazyreg.host}/mirror:latest", tmp_path / "big")
    assert dir_blobs(tmp_path / "big") == upstream.tag("fixtures/big", "latest")["blobs"]
    assert blob_gets(upstream, digest, mark) == [200, 206]
    assert faults.counters()["cut"] == 1


def test_corrupt_blob_fails_the_pull_stores_nothing_and_quarantines_the_source(
        tmp_path: Path, upstream: Upstream, faults: FaultProxy) -> None:
    server = start_lazyreg(tmp_path / "data", env={"LAZYREG_SOURCE_COOLDOWN": "4"})
    try:
        server.setup_mirror(via(faults.url, upstream), "mirror", "fixtures/small")
        faults.configure(corrupt_at=100, reset=True)
        v1 = upstream.tag("fixtures/small", "v1")
        before = server.artifact_digests()
        failed = skopeo_copy(f"{server.host}/mirror:v1", tmp_path / "bad", check=False)
        assert failed.returncode != 0
        assert server.artifact_digests() == before
        assert not list((tmp_path / "data" / "storage" / "tmp").rglob("*.part"))

        blobs = server.ok("GET", "content/blobs/?repository=mirror&limit=100")["results"]
        cooled = [b for b in blobs if any(s["cooldown_until"] for s in b["sources"])]
        assert cooled, blobs
        assert "DigestMismatch" in cooled[0]["sources"][0]["last_error"]

        faults.configure(corrupt_at=-1, reset=True)
        digest = cooled[0]["digest"]
        status, body = http_json("GET", f"{server.url}/v2/mirror/blobs/{digest}")
        assert status == 503 and "cooling down" in body["errors"][0]["message"]
        assert faults.counters()["matched"] == 0  # quarantined: not even tried

        time.sleep(4.5)
        skopeo_copy(f"{server.host}/mirror:v1", tmp_path / "good")
        assert dir_blobs(tmp_path / "good") == v1["blobs"]
        assert layers(v1) <= server.artifact_digests()
    finally:
        server.stop()


def test_503_twice_then_success(lazyreg: Lazyreg, upstream: Upstream, faults: FaultProxy,
                                tmp_path: Path) -> None:
    lazyreg.setup_mirror(via(faults.url, upstream), "mirror", "fixtures/small")
    faults.configure(fail_first=2, fail_status=503, reset=True)
    skopeo_copy(f"{lazyreg.host}/mirror:v1", tmp_path / "v1")
    assert dir_blobs(tmp_path / "v1") == upstream.tag("fixtures/small", "v1")["blobs"]
    assert faults.counters()["failed"] == 2


def test_429_with_retry_after_is_waited_for(lazyreg: Lazyreg, upstream: Upstream,
                                            tmp_path: Path) -> None:
    with running(RetryAfterProxy(upstream.url, fail_first=0, retry_after="1")) as proxy:
        lazyreg.setup_mirror(via(proxy.url, upstream), "mirror", "fixtures/small")
        proxy.fail_first = 1  # the next blob GET, after the sync stored the configs
        digest = sorted(layers(upstream.tag("fixtures/small", "v1")))[0]
        with urllib.request.urlopen(f"{lazyreg.url}/v2/mirror/blobs/{digest}") as resp:
            assert "sha256:" + hashlib.sha256(resp.read()).hexdigest() == digest
        gets = [(t, s) for t, m, p, s in proxy.seen if m == "GET" and p.endswith(digest)]
        assert [s for _, s in gets] == [429, 200]
        assert gets[1][0] - gets[0][0] >= 0.95


def _check(server: Lazyreg) -> dict:
    return server.verify()


def _wait_until_midway(staging: Path) -> None:
    """Until a download has staged 4 MiB of its 64: the moment to kill the server."""
    deadline = time.monotonic() + 30
    while not any(p.stat().st_size > 4 << 20 for p in staging.rglob("*.part")):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_kill_9_during_lazy_fetch_leaves_a_consistent_store(
        tmp_path: Path, upstream: Upstream, faults: FaultProxy) -> None:
    data = tmp_path / "data"
    server = start_lazyreg(data)
    faults.configure(rate_kib=8 * 1024, reset=True)  # 8 s for 64 MiB
    server.setup_mirror(via(faults.url, upstream), "mirror", "fixtures/big")
    digest, _ = big_layer(upstream)

    def pull() -> None:
        try:
            with urllib.request.urlopen(f"{server.url}/v2/mirror/blobs/{digest}") as resp:
                resp.read()
        except Exception:  # the server dies under it
            pass
    reader = threading.Thread(target=pull)
    reader.start()
    staging = data / "storage" / "tmp"
    _wait_until_midway(staging)
    server.kill()
    reader.join(30)

    restarted = start_lazyreg(data)
    try:
        report = _check(restarted)
        assert report["ok"], report
        assert not list(staging.rglob("*.part"))
        assert digest not in restarted.artifact_digests()
        faults.configure(rate_kib=0, reset=True)
        with urllib.request.urlopen(f"{restarted.url}/v2/mirror/blobs/{digest}") as resp:
            assert "sha256:" + hashlib.sha256(resp.read()).hexdigest() == digest
        _wait_stored(restarted, digest)
        assert _check(restarted)["ok"]
    finally:
        restarted.stop()


def test_kill_9_during_immediate_sync_then_sync_again(
        tmp_path: Path, upstream: Upstream, faults: FaultProxy) -> None:
    data = tmp_path / "data"
    server = start_lazyreg(data)
    faults.configure(rate_kib=8 * 1024, reset=True)
    server.ok("POST", "remotes/", {"name": "big", "url": faults.url,
                                   "upstream_name": "fixtures/big", "policy": "immediate"})
    server.ok("POST", "repositories/", {"name": "big"})
    task = server.ok("POST", "repositories/big/sync/", {"remote": "big"})
    _wait_until_midway(data / "storage" / "tmp")
    server.kill()

    restarted = start_lazyreg(data)
    try:
        report = _check(restarted)
        assert report["ok"], report
        assert restarted.ok("GET", f"tasks/{task['id']}/")["state"] == "failed"
        assert restarted.ok("GET", "repositories/big/")["latest_version"] == 0
        faults.configure(rate_kib=0, reset=True)
        done = restarted.sync("big", "big")
        assert done["state"] == "completed", done
        blobs = upstream.tag("fixtures/big", "latest")["blobs"]
        assert set(blobs) <= restarted.artifact_digests()
        assert _check(restarted)["ok"]
    finally:
        restarted.stop()
