"""Disk space with the real upstream and real clients: reclaim, retention, orphan cleanup
while a sync runs."""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ON_BOTH_BACKENDS, ON_BOTH_STORES
from tests.e2e.expect import configs, layers
from tests.faultproxy import GateProxy, running
from tests.rig import (
    LAZYREG_BIN,
    Lazyreg,
    Upstream,
    dir_blobs,
    run,
    skopeo_copy,
    start_lazyreg,
)

pytestmark = pytest.mark.e2e

BLOB_GET = r"^/v2/.+/blobs/sha256:"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def wait_until(condition: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.05)


def stored_files(server: Lazyreg) -> set[str]:
    root = server.data_dir / "storage" / "sha256"
    return {"sha256:" + f.name for f in root.glob("*/*")} if root.exists() else set()


def fetched_blobs(upstream: Upstream, mark: int) -> list[str]:
    return [p.rsplit("/", 1)[1] for m, p, s in upstream.requests(mark)
            if m == "GET" and "/blobs/" in p and s == 200]


def snapshot(server: Lazyreg, repository: str) -> dict[str, Any]:
    """What a repository is, apart from storage: its versions, tags and manifests."""
    return {"versions": server.ok("GET", f"repositories/{repository}/versions/"),
            "tags": server.ok("GET", f"content/tags/?repository={repository}"),
            "manifests": server.ok("GET", f"content/manifests/?repository={repository}")}


@ON_BOTH_BACKENDS
def test_reclaim_removes_the_layers_a_new_pull_fetches_again(
        lazyreg: Lazyreg, upstream: Upstream, tmp_path: Path) -> None:
    lazyreg.setup_mirror(upstream, "small", "fixtures/small", include_tags=["v1"])
    v1, v2 = upstream.tag("fixtures/small", "v1"), upstream.tag("fixtures/small", "v2")
    skopeo_copy(f"{lazyreg.host}/small:v1", tmp_path / "first")
    wait_until(lambda: layers(v1) <= lazyreg.artifact_digests(), "v1's layers stored")
    count = lazyreg.artifacts()["count"]
    before = snapshot(lazyreg, "small")

    task = lazyreg.wait_task(lazyreg.ok("POST", "repositories/small/reclaim/"))
    assert task["state"] == "completed", task
    assert task["progress"]["layers"] == {"done": 3, "total": 3}
    assert task["progress"]["message"].startswith("reclaimed 3 layers")
    assert lazyreg.artifacts()["count"] == count - 3
    assert not layers(v1) & (lazyreg.artifact_digests() | stored_files(lazyreg))
    assert configs(v1) <= lazyreg.artifact_digests()
    assert snapshot(lazyreg, "small") == before

    mark = upstream.mark()
    skopeo_copy(f"{lazyreg.host}/small:v1", tmp_path / "again")
    assert dir_blobs(tmp_path / "again") == v1["blobs"]
    assert sorted(fetched_blobs(upstream, mark)) == sorted(layers(v1))
    wait_until(lambda: layers(v1) <= lazyreg.artifact_digests(), "v1's layers stored again")

    # v2 shares v1's base layer; an immediate repository of v2 keeps it stored.
    lazyreg.ok("POST", "remotes/", {"name": "keep", "url": upstream.url, "policy": "immediate",
                                    "upstream_name": "fixtures/small", "include_tags": ["v2"]})
    lazyreg.ok("POST", "repositories/", {"name": "keep"})
    assert lazyreg.sync("keep", "keep")["state"] == "completed"
    shared = layers(v1) & layers(v2)
    assert len(shared) == 1
    task = lazyreg.wait_task(lazyreg.ok("POST", "repositories/small/reclaim/"))
    assert "reclaimed 2 layers" in task["progress"]["message"]
    assert "kept 1" in task["progress"]["message"]
    assert lazyreg.artifact_digests() & layers(v1) == shared
    assert lazyreg.verify()["ok"]


def test_five_syncs_with_retain_versions_2_leave_2_and_pins_are_checked(
        lazyreg: Lazyreg, upstream: Upstream) -> None:
    lazyreg.ok("POST", "remotes/", {"name": "many", "url": upstream.url,
                                    "upstream_name": "fixtures/many"})
    lazyreg.ok("POST", "repositories/", {"name": "many", "retain_versions": 2})

    def sync_tag(n: int) -> None:
        lazyreg.ok("PATCH", "remotes/many/", {"include_tags": [f"t{n:04d}"]})
        task = lazyreg.sync("many", "many", mirror=True)
        assert task["state"] == "completed" and task["created_resources"], task
    for n in range(5):
        sync_tag(n)
    numbers = [v["number"] for v in lazyreg.ok("GET", "repositories/many/versions/")["results"]]
    assert numbers == [5, 4]

    status, refused = lazyreg.api("POST", "distributions/", {
        "name": "old", "base_path": "old", "repository": "many", "repository_version": 3})
    assert status == 400 and refused["field"] == "repository_version"
    assert "no version 3 any more (retain_versions keeps the newest 2)" in refused["detail"]
    lazyreg.ok("POST", "distributions/", {"name": "pinned", "base_path": "pinned",
                                          "repository": "many", "repository_version": 4})
    status, refused = lazyreg.api("PATCH", "distributions/pinned/", {"repository_version": 1})
    assert status == 400 and "no version 1 any more" in refused["detail"]

    for n in (5, 6):
        sync_tag(n)
    numbers = [v["number"] for v in lazyreg.ok("GET", "repositories/many/versions/")["results"]]
    assert numbers == [7, 6, 4]  # 4 is pinned: it stays, and is served
    status, conflict = lazyreg.api("DELETE", "repositories/many/versions/4/")
    assert status == 409 and "distribution pinned" in conflict["detail"]
    request = urllib.request.Request(f"{lazyreg.url}/v2/pinned/manifests/t0003",
                                     headers={"Accept": DOCKER_MANIFEST})
    with urllib.request.urlopen(request) as resp:
        assert json.loads(resp.read())["schemaVersion"] == 2
    assert lazyreg.ok("GET", "check/")["ok"]


def _age(db: Path, hours: float) -> None:
    """Make every content row and artifact look `hours` old (instead of waiting for it)."""
    then = datetime.now(UTC) - timedelta(hours=hours)
    with sqlite3.connect(db, timeout=30) as conn:
        conn.execute("UPDATE content SET created = ?", (then.strftime("%Y-%m-%d %H:%M:%S.%f"),))
        conn.execute("UPDATE artifacts SET created = ?, last_used = ?",
                     (then.strftime("%Y-%m-%d %H:%M:%S.%f"), then.timestamp()))


@ON_BOTH_STORES
def test_orphan_cleanup_removes_a_deleted_repository_and_keeps_a_running_sync(
        upstream: Upstream, tmp_path: Path, storage_env: dict[str, str]) -> None:
    oci = upstream.tag("fixtures/oci", "1.0")
    small = {t: upstream.tag("fixtures/small", t) for t in ("v1", "v2")}
    first = start_lazyreg(tmp_path / "data", env=storage_env)
    try:
        first.setup_mirror(upstream, "gone", "fixtures/oci", include_tags=["1.0"])
        skopeo_copy(f"{first.host}/gone:1.0", tmp_path / "gone")
        first.setup_mirror(upstream, "old", "fixtures/small", include_tags=["v1"])
        skopeo_copy(f"{first.host}/old:v1", tmp_path / "old")
        wait_until(lambda: (layers(oci) | layers(small["v1"])) <= first.artifact_digests(),
                   "the pulled layers stored")
        for name in ("gone", "old"):
            first.ok("DELETE", f"repositories/{name}/")
    finally:
        first.stop()  # which writes down when each blob was last used
    _age(tmp_path / "data" / "lazyreg.db", hours=2)
    lazyreg = start_lazyreg(tmp_path / "data", env=storage_env)
    try:
        _cleanup_during_a_sync(lazyreg, upstream, tmp_path, oci, small)
    finally:
        lazyreg.stop()


def _cleanup_during_a_sync(lazyreg: Lazyreg, upstream: Upstream, tmp_path: Path,
                           oci: dict[str, Any], small: dict[str, Any]) -> None:

    # An immediate sync of small:v1 and v2 reuses what `old` left and stops at v2's own layer.
    own = layers(small["v2"]) - layers(small["v1"])
    with running(GateProxy(upstream.url, own)) as gate:
        lazyreg.ok("POST", "remotes/", {"name": "busy", "url": gate.url, "policy": "immediate",
                                        "upstream_name": "fixtures/small",
                                        "include_tags": ["v1", "v2"]})
        lazyreg.ok("POST", "repositories/", {"name": "busy"})
        sync = lazyreg.ok("POST", "repositories/busy/sync/", {"remote": "busy"})
        assert gate.holding.wait(60), "the sync never asked for v2's layer"
        cleanup = lazyreg.wait_task(lazyreg.ok("POST", "orphans/cleanup/", {}))
        gate.release()
        synced = lazyreg.wait_task(sync)
    assert cleanup["state"] == "completed", cleanup
    assert synced["state"] == "completed", synced

    stored = lazyreg.artifact_digests()
    assert not (set(oci["blobs"]) | set(oci["manifests"])) & (stored | stored_files(lazyreg))
    assert set(small["v1"]["blobs"]) | set(small["v2"]["blobs"]) <= stored
    assert not lazyreg.ok("GET", f"content/manifests/?digest={oci['digest']}")["count"]
    assert cleanup["progress"]["artifacts"]["done"] >= len(oci["blobs"]) + 1
    lazyreg.ok("POST", "distributions/", {"name": "busy", "base_path": "busy",
                                          "repository": "busy"})
    skopeo_copy(f"{lazyreg.host}/busy:v2", tmp_path / "busy")
    assert dir_blobs(tmp_path / "busy") == small["v2"]["blobs"]
    checked = run([str(LAZYREG_BIN), "--server", lazyreg.url, "check", "--verify"])
    assert checked.stdout.split()[:2] == ["ok", "yes"]
