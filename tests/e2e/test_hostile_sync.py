"""A real lazyreg server syncing from an upstream that lies, floods and drips (tests/hostile.py).

Each sync must end within 60 s, failed with a clear message or completed
within its bounds, with the server's peak RSS growing by less than 100 MiB.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ON_BOTH_STORES
from tests.hostile import Hostile, digest, running
from tests.rig import Lazyreg, start_lazyreg

pytestmark = pytest.mark.e2e

MIB_IN_KIB = 1024


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    with running(Hostile()) as up:
        yield up


def sync(server: Lazyreg, up: Hostile, name: str, upstream_name: str = "app",
         **remote: Any) -> tuple[dict[str, Any], float, int]:
    """Create remote, repository and distribution `name` and sync: (task, s, RSS growth KiB)."""
    server.ok("POST", "remotes/", {"name": name, "url": up.url, "upstream_name": upstream_name,
                                   **remote})
    server.ok("POST", "repositories/", {"name": name})
    server.ok("POST", "distributions/", {"name": name, "base_path": name, "repository": name})
    return resync(server, name)


def resync(server: Lazyreg, name: str) -> tuple[dict[str, Any], float, int]:
    before = server.peak_rss_kib()
    started = time.monotonic()
    task = server.wait_task(server.ok("POST", f"repositories/{name}/sync/", {"remote": name}),
                            timeout=60)
    return task, time.monotonic() - started, server.peak_rss_kib() - before


def get(server: Lazyreg, path: str, timeout: float = 30) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"{server.url}/v2/{path}", timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def image(up: Hostile, n: int, tag: str | None = None, name: str = "app", **kw: Any) -> str:
    return up.add_image(name, tag, b'{"image": %d}' % n, [b"layer of image %d" % n], **kw)


def test_endless_config_fails_its_tag_at_the_cap(lazyreg: Lazyreg, hostile: Hostile) -> None:
    image(hostile, 1, "good")
    config = b'{"image": "endless"}'
    image_bad = hostile.add_image("app", "bad", config, [b"x"], config_size=100)
    hostile.endless_blobs.add(digest(config))
    task, seconds, growth = sync(lazyreg, hostile, "m")
    print(f"\nendless config: {seconds:.1f}s, peak RSS +{growth // 1024} MiB")
    assert task["state"] == "completed", task
    assert len(task["warnings"]) == 1
    assert "'bad'" in task["warnings"][0] and "more than the limit of 100 bytes" \
        in task["warnings"][0], task["warnings"]
    assert seconds < 60 and growth < 100 * MIB_IN_KIB
    assert {t["name"] for t in lazyreg.ok("GET", "content/tags/?repository=m")["results"]} \
        == {"good"}
    assert image_bad not in lazyreg.artifact_digests()


def test_endless_tag_list_fails_the_sync(lazyreg: Lazyreg, hostile: Hostile) -> None:
    image(hostile, 1, "good")
    hostile.endless_tag_lists.add("app")
    task, seconds, growth = sync(lazyreg, hostile, "m")
    print(f"\nendless tag list: {seconds:.1f}s, peak RSS +{growth // 1024} MiB")
    assert task["state"] == "failed"
    assert "tag list of app" in task["error"] and "more than the limit of 8388608 bytes" \
        in task["error"], task["error"]
    assert seconds < 60 and growth < 100 * MIB_IN_KIB


def test_link_loop_fails_the_sync(lazyreg: Lazyreg, hostile: Hostile) -> None:
    image(hostile, 1, "a")
    hostile.link_loops.add("app")
    task, seconds, growth = sync(lazyreg, hostile, "m")
    assert task["state"] == "failed"
    assert "Link header loops" in task["error"], task["error"]
    assert sum(1 for p in hostile.paths() if "/tags/list" in p) == 2
    assert seconds < 60 and growth < 100 * MIB_IN_KIB


def test_a_million_tags(lazyreg: Lazyreg, hostile: Hostile) -> None:
    for i in range(5):
        image(hostile, i, f"t{i:07d}")
    hostile.generated_tags["app"] = 1_000_000
    task, seconds, growth = sync(lazyreg, hostile, "capped")
    print(f"\na million tags, default max_tags: {seconds:.1f}s, peak RSS +{growth // 1024} MiB")
    assert task["state"] == "failed"
    assert "more than 100000 tags" in task["error"] and "max_tags" in task["error"], task
    assert seconds < 60 and growth < 100 * MIB_IN_KIB

    task, seconds, growth = sync(lazyreg, hostile, "all", max_tags=1_000_000,
                                 include_tags=["t000000[0-4]"])
    print(f"a million tags listed, 5 selected: {seconds:.1f}s, peak RSS +{growth // 1024} MiB")
    assert task["state"] == "completed", task
    assert task["progress"]["tags"] == {"done": 5, "total": 5}
    assert seconds < 60 and growth < 100 * MIB_IN_KIB


def test_tag_poisoning_fails(lazyreg: Lazyreg, hostile: Hostile) -> None:
    trusted = image(hostile, 1, "v1", name="good/app")
    trusted_layer = digest(b"layer of image 1")
    task, _, _ = sync(lazyreg, hostile, "good", upstream_name="good/app")
    assert task["state"] == "completed", task

    own = image(hostile, 2, "latest", name="evil/app")
    task, _, _ = sync(lazyreg, hostile, "evil", upstream_name="evil/app")
    assert task["state"] == "completed", task
    # Now the evil upstream claims the good repository's manifest on HEAD, and lists an
    # index naming it, hoping lazyreg uses what it already holds.
    hostile.head_lies[("evil/app", "latest")] = trusted
    hostile.add_index("evil/app", "idx", [own])
    index = hostile.repo("evil/app")
    data = index.manifests[index.tags["idx"]][0].replace(own.encode(), trusted.encode())
    del index.manifests[index.tags["idx"]]
    hostile.add_manifest("evil/app", data, "idx")
    hostile.requests.clear()

    task, _, _ = resync(lazyreg, "evil")
    assert task["state"] == "completed", task
    assert any("'idx'" in w and "not found upstream" in w for w in task["warnings"]), task
    # The HEAD's claim led to a GET, and the GET's bytes decided.
    assert ("HEAD", "/v2/evil/app/manifests/latest") in hostile.requests
    assert ("GET", "/v2/evil/app/manifests/latest") in hostile.requests
    status, body = get(lazyreg, "evil/manifests/latest")
    assert status == 200 and digest(body) == own
    assert get(lazyreg, f"evil/manifests/{trusted}")[0] == 404
    assert get(lazyreg, f"evil/blobs/{trusted_layer}")[0] == 404
    blob = lazyreg.ok("GET", "content/blobs/?repository=good&limit=100")["results"]
    sources = {s["remote"] for b in blob if b["digest"] == trusted_layer for s in b["sources"]}
    assert sources == {"good"}


def test_invalid_tag_names_are_never_requested(lazyreg: Lazyreg, hostile: Hostile) -> None:
    image(hostile, 1, "good")
    hostile.extra_tags["app"] = ["../x", "../../../../v2/evil/marker/manifests/x"]
    task, _, _ = sync(lazyreg, hostile, "m")
    assert task["state"] == "completed", task
    assert len(task["warnings"]) == 2, task["warnings"]
    assert all("not a valid tag name" in w for w in task["warnings"])
    assert not any(p.endswith("/x") or "evil" in p for p in hostile.paths()), hostile.paths()


@ON_BOTH_STORES
def test_a_drip_fed_blob_fails_its_client_and_frees_its_slot(
        hostile: Hostile, tmp_path: Path, storage_env: dict[str, str]) -> None:
    stall_timeout = 3
    server = start_lazyreg(tmp_path / "data", env={**storage_env,
                                                   "LAZYREG_STALL_TIMEOUT": str(stall_timeout),
                                                   "LAZYREG_MIN_RATE": "1024"})
    try:
        dripping = b"d" * 50_000
        hostile.add_image("app", "drip", b'{"image": "drip"}', [dripping])
        hostile.drip_blobs[digest(dripping)] = 1.0  # one byte a second
        image(hostile, 2, "fine")
        # One download slot: the drip must give it back for the next blob to come.
        task, _, _ = sync(server, hostile, "m", download_concurrency=1)
        assert task["state"] == "completed", task

        started = time.monotonic()
        try:
            status, body = get(server, f"m/blobs/{digest(dripping)}", timeout=60)
        except (http.client.IncompleteRead, ConnectionError, urllib.error.URLError):
            status, body = 0, b""
        elapsed = time.monotonic() - started
        print(f"\ndrip-fed blob failed its client after {elapsed:.1f}s")
        assert not (status == 200 and body == dripping)
        assert elapsed < stall_timeout + 10

        started = time.monotonic()
        status, body = get(server, f"m/blobs/{digest(b'layer of image 2')}", timeout=20)
        assert status == 200 and body == b"layer of image 2"
        assert time.monotonic() - started < 5
        assert digest(dripping) not in server.artifact_digests()
    finally:
        server.stop()
