"""`lazyreg serve --workers 2`, and the operator's figures of several processes.

- Two workers answer on one port; a worker killed with -9 is started again
  while the other keeps answering; `/metrics` (whichever worker answers it)
  counts the requests of both, the dead one's included.
- 20 clients on one download: 1 miss and 19 joins on the status page and in
  `/metrics`, and the bytes saved include the joined bytes; a second server on
  the same database shows the same figures and the blob stored through the first.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.test_faults import _pull_many, big_layer, blob_gets, via
from tests.rig import FaultProxy, Lazyreg, Upstream, start_lazyreg

pytestmark = pytest.mark.e2e

PROCESS = re.compile(r"process\s+<code>([^<]+)</code>")


def children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(p) for p in text.split()}


def gone(pid: int) -> bool:
    """Whether the process has exited (a zombie, or reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] == "Z"
    except FileNotFoundError:
        return True


def page(url: str) -> str:
    with urllib.request.urlopen(url + "/", timeout=30) as resp:
        return resp.read().decode()


def metric(url: str, name: str, **labels: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=30) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def count(html: str, key: str) -> int:
    found = re.search(rf'id="{key}" data-count="(\d+)"', html)
    assert found is not None, key
    return int(found.group(1))


def saved(html: str, key: str) -> int:
    found = re.search(rf'id="saved-{key}" class="bytes" data-bytes="(\d+)"', html)
    assert found is not None, key
    return int(found.group(1))


def test_two_workers_one_killed_is_restarted_and_metrics_count_both(tmp_path: Path) -> None:
    server = start_lazyreg(tmp_path / "data", args=["--workers", "2"])
    try:
        deadline = time.monotonic() + 30
        while len(children(server.proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = children(server.proc.pid)
        assert len(workers) == 2
        # Status pages until both workers have answered one (each page names its process).
        # (the second worker may still be starting: it listens once it is ready)
        seen: set[str] = set()
        pages = 0
        deadline = time.monotonic() + 60
        while len(seen) < 2 and time.monotonic() < deadline:
            found = PROCESS.search(page(server.url))
            assert found is not None
            seen.add(found.group(1))
            pages += 1
        assert len(seen) == 2, f"one worker answered all {pages} pages"
        assert metric(server.url, "lazyreg_http_requests_total", route="/") == pages

        victim = next(iter(workers))
        os.kill(victim, signal.SIGKILL)
        # Until the kernel has closed its socket, a connection may still be queued to it
        # (and reset): SO_REUSEPORT's one loss, which a client's retry covers.
        while gone(victim) is False:
            time.sleep(0.01)
        answered = 0
        deadline = time.monotonic() + 60
        resets = 0
        while time.monotonic() < deadline:
            try:
                html = page(server.url)
            except ConnectionResetError:  # queued to the dead one: a client retries
                resets += 1
                assert resets <= 3
                continue
            assert PROCESS.search(html) is not None  # the other one answers
            answered += 1
            now = children(server.proc.pid)
            if len(now) == 2 and victim not in now:
                break
        else:
            raise AssertionError("the killed worker was not started again")
        # The requests the dead worker answered still count.
        assert metric(server.url, "lazyreg_http_requests_total", route="/") == pages + answered
        assert "process_resident_memory_bytes" not in urllib.request.urlopen(
            server.url + "/metrics").read().decode()  # one process's figure, not summed
    finally:
        server.stop()
    assert server.proc.returncode == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


def test_joins_count_as_joins_and_every_node_shows_the_same(
        upstream: Upstream, tmp_path: Path) -> None:
    faults = FaultProxy(upstream.url, tmp_path / "faults.log")
    first = start_lazyreg(tmp_path / "data")
    second: Lazyreg | None = None
    try:
        faults.configure(rate_kib=32 * 1024, reset=True)  # 64 MiB in about 2 s
        first.setup_mirror(via(faults.url, upstream), "mirror", "fixtures/big")
        second = start_lazyreg(tmp_path / "data")  # another node: the same database
        digest, size = big_layer(upstream)
        mark = upstream.mark()
        results = asyncio.run(_pull_many([f"{first.url}/v2/mirror/blobs/{digest}"] * 20))
        assert all(r[0] == digest for r in results)
        assert blob_gets(upstream, digest, mark) == [200]

        assert metric(first.url, "lazyreg_cache_misses_total") == 1
        assert metric(first.url, "lazyreg_cache_joins_total") == 19
        assert metric(first.url, "lazyreg_blob_served_bytes_total", source="join") == 19 * size
        html = page(first.url)
        assert (count(html, "misses-overall"), count(html, "joins-overall")) == (1, 19)
        assert saved(html, "overall") >= 19 * size  # joined bytes (and any hits) saved
        # Node B: the same figures from the database, and the blob node A stored.
        other = page(second.url)
        assert (count(other, "misses-overall"), count(other, "joins-overall")) == (1, 19)
        assert saved(other, "overall") == saved(html, "overall")
        layer = re.search(r'id="stored-layer" class="bytes" data-bytes="(\d+)"', other)
        assert layer is not None and int(layer.group(1)) == size
    finally:
        for server in (first, second):
            if server is not None:
                server.stop()
        faults.stop()


def test_a_stop_drains_the_downloads_in_flight(upstream: Upstream, tmp_path: Path) -> None:
    faults = FaultProxy(upstream.url, tmp_path / "faults.log")
    # Room for a slow machine: the drain is what is tested, not its bound.
    server = start_lazyreg(tmp_path / "data", args=["--workers", "2"],
                           env={"LAZYREG_SHUTDOWN_TIMEOUT": "60"})
    try:
        faults.configure(rate_kib=16 * 1024, reset=True)  # 64 MiB in about 4 s
        server.setup_mirror(via(faults.url, upstream), "mirror", "fixtures/big")
        digest, _ = big_layer(upstream)
        h = hashlib.sha256()
        with urllib.request.urlopen(f"{server.url}/v2/mirror/blobs/{digest}",
                                    timeout=120) as resp:
            h.update(resp.read(1024 * 1024))
            server.proc.send_signal(signal.SIGTERM)  # the supervisor: stop, draining
            while chunk := resp.read(1024 * 1024):
                h.update(chunk)
        assert "sha256:" + h.hexdigest() == digest
        assert server.proc.wait(90) == 0
    finally:
        server.stop()
        faults.stop()
