"""The bounded cache with real pulls, and cleanups killed with kill -9.

The upstream is a registry of its own, filled by push: three images of two
1.5 MiB layers, and one of a single 32 MiB layer, bigger than the bound.
"""

from __future__ import annotations

import hashlib
import http.client
import random
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ON_BOTH_STORES
from tests.pusher import Pusher
from tests.rig import (
    LAZYREG_BIN,
    Lazyreg,
    Upstream,
    dir_blobs,
    run,
    skopeo_copy,
    start_lazyreg,
    start_upstream,
)

pytestmark = pytest.mark.e2e

REPO = "disk/images"
MIB = 1024 * 1024
IMAGE_LAYERS = 2 * 3 * MIB // 2  # two layers of 1.5 MiB
BOUND = IMAGE_LAYERS * 3 // 2  # about 1.5 images


class Images:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.layers: dict[str, list[str]] = {}
        self.blobs: dict[str, dict[str, int]] = {}  # what skopeo must get, per tag


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Images]:
    upstream = start_upstream(tmp_path_factory.mktemp("upstream-disk"))
    found = Images(upstream)
    pusher = Pusher(upstream.url)
    rng = random.Random(13)
    shapes = {"i1": [3 * MIB // 2] * 2, "i2": [3 * MIB // 2] * 2, "i3": [3 * MIB // 2] * 2,
              "big": [32 * MIB]}
    try:
        for tag, sizes in shapes.items():
            layers = [rng.randbytes(size) for size in sizes]
            config = f'{{"image": "{tag}"}}'.encode()
            pusher.image(REPO, tag, config, layers)
            found.layers[tag] = [_sha256(layer) for layer in layers]
            found.blobs[tag] = {_sha256(b): len(b) for b in (config, *layers)}
    finally:
        pusher.close()
    yield found
    upstream.stop()


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def wait_until(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.05)


def stored_layers(server: Lazyreg) -> set[str]:
    return {a["digest"] for a in server.ok("GET", "artifacts/?kind=layer&limit=1000")["results"]}


def cache(server: Lazyreg) -> dict[str, Any]:
    answer: dict[str, Any] = server.ok("GET", "status/")["cache"]
    return answer


def settled(server: Lazyreg) -> bool:
    """No eviction running, and the refetchable bytes within the bound."""
    now = cache(server)
    return not now["evicting"] and now["evictable_bytes"] <= BOUND


def fetched(upstream: Upstream, mark: int) -> set[str]:
    return {p.rsplit("/", 1)[1] for m, p, s in upstream.requests(mark)
            if m == "GET" and "/blobs/" in p and s == 200}


@ON_BOTH_STORES
def test_three_images_through_a_cache_of_one_and_a_half(
        images: Images, tmp_path: Path, storage_env: dict[str, str]) -> None:
    server = start_lazyreg(tmp_path / "data", env={**storage_env,
                                                   "LAZYREG_MAX_CACHE_BYTES": str(BOUND),
                                                   "LAZYREG_USAGE_FLUSH_INTERVAL": "0.2"})
    try:
        server.setup_mirror(images.upstream, "img", REPO, include_tags=["i1", "i2", "i3"])
        layers = {tag: set(images.layers[tag]) for tag in ("i1", "i2", "i3")}

        def pull(tag: str, into: str) -> None:
            skopeo_copy(f"{server.host}/img:{tag}", tmp_path / into)
            assert dir_blobs(tmp_path / into) == images.blobs[tag]

        pull("i1", "a")
        wait_until(lambda: stored_layers(server) == layers["i1"], "i1 stored")
        for tag, gone in (("i2", "i1"), ("i3", "i2")):
            pull(tag, tag)
            # The least recently served image went, the one just pulled stayed.
            wait_until(lambda: settled(server) and stored_layers(server) == layers[tag],  # noqa: B023
                       f"{gone} evicted for {tag}")
        assert cache(server)["evicted_blobs"] == 4
        assert cache(server)["max_bytes"] == BOUND
        with urllib.request.urlopen(f"{server.url}/metrics") as resp:
            metrics = dict(line.rsplit(" ", 1) for line in resp.read().decode().splitlines()
                           if line.startswith("lazyreg_evict"))
        assert float(metrics["lazyreg_evictions_total"]) == 4
        assert float(metrics["lazyreg_evicted_bytes_total"]) == 2 * IMAGE_LAYERS

        mark = images.upstream.mark()
        pull("i1", "a-again")
        assert fetched(images.upstream, mark) == layers["i1"]
        wait_until(lambda: settled(server) and stored_layers(server) == layers["i1"],
                   "i3 evicted for i1")
        assert server.verify()["ok"]
    finally:
        server.stop()


def test_a_blob_being_sent_is_not_evicted(images: Images, tmp_path: Path) -> None:
    server = start_lazyreg(tmp_path / "data", env={"LAZYREG_MAX_CACHE_BYTES": str(BOUND),
                                                   "LAZYREG_USAGE_FLUSH_INTERVAL": "0.2"})
    try:
        server.setup_mirror(images.upstream, "img", REPO, include_tags=["i1", "big"])
        skopeo_copy(f"{server.host}/img:i1", tmp_path / "i1")
        wait_until(lambda: stored_layers(server) == set(images.layers["i1"]), "i1 stored")
        [big] = images.layers["big"]
        # A client reads 1 MiB of the 32 MiB layer (over the bound alone), then stops reading.
        conn = http.client.HTTPConnection(server.host, timeout=60)
        conn.request("GET", f"/v2/img/blobs/{big}")
        resp = conn.getresponse()
        assert resp.status == 200
        first = resp.read(MIB)
        # Stored, it pushes the cache over its bound: i1's layers go, the one being sent stays.
        wait_until(lambda: not cache(server)["evicting"] and stored_layers(server) == {big},
                   "i1 evicted while the big layer is being sent")
        assert big in {a["digest"] for a in server.artifacts()["results"]}
        rest = resp.read()
        conn.close()
        assert _sha256(first + rest) == big
        # The transfer over, the layer is evictable like any other.
        wait_until(lambda: not stored_layers(server), "the big layer evicted once sent")
        assert server.verify()["ok"]
    finally:
        server.stop()


def _files(data: Path) -> int:
    return sum(1 for _ in (data / "storage" / "sha256").glob("*/*"))


def _kill_midway(server: Lazyreg, data: Path, start: int) -> int:
    """Kill the server once some stored files are gone and others are not: the count left."""
    deadline = time.monotonic() + 60
    while not 0 < _files(data) < start:
        assert time.monotonic() < deadline, "the deletion never started"
        time.sleep(0.005)
    server.kill()
    left = _files(data)
    assert 0 < left < start, "the deletion ended before the kill: nothing was tested"
    return left


def _check_verify(server: Lazyreg) -> None:
    checked = run([str(LAZYREG_BIN), "--server", server.url, "-o", "json", "check",
                   "--verify"])  # exits 1 unless ok
    assert '"ok": true' in checked.stdout


def test_kill_9_during_eviction_and_during_cleanup(upstream: Upstream, tmp_path: Path) -> None:
    data = tmp_path / "data"
    one_at_a_time = {"LAZYREG_CLEANUP_BATCH_SIZE": "1"}
    server = start_lazyreg(data, env=one_at_a_time)
    try:
        server.setup_mirror(upstream, "many", "fixtures/many", include_tags=["t00[0-3]*"])
        entries = [e for tag, e in upstream.index["repos"]["fixtures/many"].items()
                   if tag < "t0040"]
        own = {d for e in entries for d in e["blobs"]} - {
            e["config"]["digest"] for e in entries}
        with ThreadPoolExecutor(8) as pool:  # every layer, stored on demand
            list(pool.map(lambda d: _get(f"{server.url}/v2/many/blobs/{d}"), sorted(own)))
        wait_until(lambda: len(stored_layers(server)) == len(own), "the layers stored")
    finally:
        server.stop()

    # Restarted with a bound of one byte, the server evicts every layer at once: kill it midway.
    start = _files(data)
    server = start_lazyreg(data, env={**one_at_a_time, "LAZYREG_MAX_CACHE_BYTES": "1"})
    _kill_midway(server, data, start)
    server = start_lazyreg(data, env=one_at_a_time)
    try:
        _check_verify(server)
        server.ok("DELETE", "repositories/many/")
        task = server.ok("POST", "orphans/cleanup/", {"protection_time": 0})
        _kill_midway(server, data, _files(data))
    finally:
        server.stop()
    server = start_lazyreg(data)
    try:
        _check_verify(server)
        assert server.ok("GET", f"tasks/{task['id']}/")["state"] == "failed"
        done = server.wait_task(server.ok("POST", "orphans/cleanup/", {"protection_time": 0}))
        assert done["state"] == "completed", done
        assert server.artifacts()["count"] == 0 and _files(data) == 0
        _check_verify(server)
    finally:
        server.stop()


def _get(url: str) -> None:
    with urllib.request.urlopen(url, timeout=60) as resp:
        resp.read()
