"""Sync against the real CNCF distribution registry seeded by ../shared/upstream."""

from __future__ import annotations

import hashlib
import time
import urllib.request
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from tests.e2e.expect import repo_truth
from tests.rig import PASSWORD, USER, Lazyreg, Upstream, start_upstream

pytestmark = pytest.mark.e2e


def content(server: Lazyreg, kind: str, repository: str, version: int | None = None) -> list[dict]:
    query = f"content/{kind}/?repository={repository}&limit=1000"
    if version is not None:
        query += f"&version={version}"
    return server.ok("GET", query)["results"]


@pytest.mark.parametrize("repo", ["fixtures/small", "fixtures/oci", "fixtures/multiarch"])
def test_on_demand_sync_matches_upstream_and_stores_no_layer(
        lazyreg: Lazyreg, upstream: Upstream, repo: str) -> None:
    task = lazyreg.setup_mirror(upstream, "mirror", repo)
    assert task["state"] == "completed", task
    assert task["created_resources"] == ["repositories/mirror/versions/1/"]
    truth = repo_truth(upstream.index, repo)

    tags = {t["name"]: t["digest"] for t in content(lazyreg, "tags", "mirror")}
    assert tags == {name: e["digest"] for name, e in upstream.index["repos"][repo].items()}
    assert {m["digest"] for m in content(lazyreg, "manifests", "mirror")} == truth["manifests"]
    assert {b["digest"] for b in content(lazyreg, "blobs", "mirror")} == truth["blobs"]
    # Stored: exactly the manifests and the config blobs, no layer.
    assert lazyreg.artifact_digests() == truth["manifests"] | truth["configs"]
    assert not truth["layers"] & lazyreg.artifact_digests()
    version = lazyreg.ok("GET", "repositories/mirror/versions/1/")
    assert version["content_counts"] == {"tags": len(truth["tags"]),
                                         "manifests": len(truth["manifests"]),
                                         "blobs": len(truth["blobs"])}


def test_manifests_keep_their_exact_upstream_bytes(lazyreg: Lazyreg, upstream: Upstream) -> None:
    lazyreg.setup_mirror(upstream, "mirror", "fixtures/multiarch")
    for digest in repo_truth(upstream.index, "fixtures/multiarch")["manifests"]:
        path = lazyreg.data_dir / "storage" / "sha256" / digest[7:9] / digest[7:]
        assert "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_immediate_sync_stores_every_blob_verified(lazyreg: Lazyreg, upstream: Upstream) -> None:
    task = lazyreg.setup_mirror(upstream, "mirror", "fixtures/small", policy="immediate")
    assert task["state"] == "completed", task
    truth = repo_truth(upstream.index, "fixtures/small")
    assert lazyreg.artifact_digests() == truth["manifests"] | truth["blobs"]
    for digest in truth["blobs"]:
        path = lazyreg.data_dir / "storage" / "sha256" / digest[7:9] / digest[7:]
        assert "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert all(b["stored"] for b in content(lazyreg, "blobs", "mirror"))


def test_immediate_after_on_demand_downloads_what_is_missing(
        lazyreg: Lazyreg, upstream: Upstream) -> None:
    lazyreg.setup_mirror(upstream, "mirror", "fixtures/small")
    truth = repo_truth(upstream.index, "fixtures/small")
    lazyreg.ok("PATCH", "remotes/mirror/", {"policy": "immediate"})
    task = lazyreg.sync("mirror", "mirror")
    assert task["state"] == "completed", task
    assert task["created_resources"] == []  # same content, no new version
    assert lazyreg.artifact_digests() == truth["manifests"] | truth["blobs"]


def test_streamed_syncs_like_on_demand(lazyreg: Lazyreg, upstream: Upstream) -> None:
    task = lazyreg.setup_mirror(upstream, "mirror", "fixtures/small", policy="streamed")
    assert task["state"] == "completed", task
    truth = repo_truth(upstream.index, "fixtures/small")
    assert lazyreg.artifact_digests() == truth["manifests"] | truth["configs"]


@pytest.mark.parametrize(("include", "exclude"), [
    (["t000*"], None),
    (["t00[0-2]*", "t0199"], ["t001*"]),
    (None, ["t00*"]),
])
def test_tag_globs_select_what_they_say(lazyreg: Lazyreg, upstream: Upstream,
                                        include: list[str] | None,
                                        exclude: list[str] | None) -> None:
    task = lazyreg.setup_mirror(upstream, "mirror", "fixtures/many",
                                include_tags=include, exclude_tags=exclude)
    assert task["state"] == "completed", task
    expected = {t for t in upstream.index["repos"]["fixtures/many"]
                if (not include or any(fnmatchcase(t, p) for p in include))
                and not (exclude and any(fnmatchcase(t, p) for p in exclude))}
    assert 0 < len(expected) < 200
    assert {t["name"] for t in content(lazyreg, "tags", "mirror")} == expected


def test_resync_without_changes_creates_no_version_and_gets_no_manifest(
        lazyreg: Lazyreg, upstream: Upstream) -> None:
    lazyreg.setup_mirror(upstream, "mirror", "fixtures/multiarch")
    mark = upstream.mark()
    task = lazyreg.sync("mirror", "mirror")
    assert task["state"] == "completed", task
    assert task["created_resources"] == []
    assert lazyreg.ok("GET", "repositories/mirror/")["latest_version"] == 1
    assert upstream.count("GET", r"/manifests/", since=mark) == 0
    assert upstream.count("HEAD", r"/manifests/", since=mark) == 2  # one per tag
    assert upstream.count("GET", r"/blobs/", since=mark) == 0


def test_mirror_true_drops_a_tag_removed_upstream_and_mirror_false_keeps_it(
        lazyreg: Lazyreg, tmp_path: Path) -> None:
    up = start_upstream(tmp_path / "up", seed=["--big-mib", "0", "--many-tags", "0"])
    try:
        lazyreg.setup_mirror(up, "mirror", "fixtures/small")
        v1 = up.tag("fixtures/small", "v1")["digest"]
        req = urllib.request.Request(f"{up.url}/v2/fixtures/small/manifests/{v1}",
                                     method="DELETE")
        assert urllib.request.urlopen(req).status == 202

        task = lazyreg.sync("mirror", "mirror", mirror=False)
        assert task["state"] == "completed", task
        assert {t["name"] for t in content(lazyreg, "tags", "mirror")} == {"v1", "v2", "latest"}

        task = lazyreg.sync("mirror", "mirror", mirror=True)
        assert task["state"] == "completed", task
        assert task["created_resources"] == ["repositories/mirror/versions/2/"]
        assert {t["name"] for t in content(lazyreg, "tags", "mirror")} == {"v2", "latest"}
        assert v1 not in {m["digest"] for m in content(lazyreg, "manifests", "mirror")}
        # version 1 still holds v1: versions are immutable
        assert "v1" in {t["name"] for t in content(lazyreg, "tags", "mirror", version=1)}
    finally:
        up.stop()


@pytest.mark.parametrize("mode", ["basic", "token"])
def test_sync_with_credentials(lazyreg: Lazyreg, mode: str, request: pytest.FixtureRequest
                               ) -> None:
    up: Upstream = request.getfixturevalue(f"upstream_{mode}")
    task = lazyreg.setup_mirror(up, "mirror", "fixtures/small", username=USER, password=PASSWORD)
    assert task["state"] == "completed", task
    truth = repo_truth(up.index, "fixtures/small")
    assert lazyreg.artifact_digests() == truth["manifests"] | truth["configs"]


@pytest.mark.parametrize("mode", ["basic", "token"])
def test_wrong_password_fails_the_task_saying_so(lazyreg: Lazyreg, mode: str,
                                                 request: pytest.FixtureRequest) -> None:
    up: Upstream = request.getfixturevalue(f"upstream_{mode}")
    task = lazyreg.setup_mirror(up, "mirror", "fixtures/small", username=USER, password="nope")
    assert task["state"] == "failed"
    assert "wrong username or password" in task["error"]
    assert lazyreg.ok("GET", "repositories/mirror/")["latest_version"] == 0


def test_sync_of_200_tags(lazyreg: Lazyreg, upstream: Upstream) -> None:
    mark = upstream.mark()
    started = time.monotonic()
    task = lazyreg.setup_mirror(upstream, "mirror", "fixtures/many")
    elapsed = time.monotonic() - started
    assert task["state"] == "completed", task
    assert lazyreg.ok("GET", "repositories/mirror/versions/1/")["content_counts"]["tags"] == 200
    # New tags are fetched with one GET each, not a HEAD and then a GET.
    assert upstream.count("HEAD", r"/manifests/", since=mark) == 0
    assert upstream.count("GET", r"/manifests/", since=mark) == 200
    assert upstream.count("GET", r"/blobs/", since=mark) == 200  # each config once
    requests = len(upstream.requests(mark))
    print(f"\nsync of fixtures/many (200 tags): {elapsed:.2f}s, {requests} upstream requests")


def test_unknown_remote_and_invalid_names_are_4xx_naming_the_field(lazyreg: Lazyreg) -> None:
    lazyreg.ok("POST", "repositories/", {"name": "mirror"})
    status, body = lazyreg.api("POST", "repositories/mirror/sync/", {"remote": "nope"})
    assert status == 400 and body["field"] == "remote", body
    status, body = lazyreg.api("POST", "remotes/", {"name": "bad name!", "url": "http://x",
                                                    "upstream_name": "a"})
    assert status == 400 and body["field"] == "name", body
    status, body = lazyreg.api("POST", "remotes/", {"name": "r", "url": "http://x",
                                                    "upstream_name": "Not/Valid"})
    assert status == 400 and body["field"] == "upstream_name", body


def _assert_nothing_written(server: Lazyreg) -> None:
    assert server.ok("GET", "repositories/mirror/")["latest_version"] == 0
    assert server.ok("GET", "content/manifests/")["count"] == 0
    assert server.ok("GET", "content/blobs/")["count"] == 0
    assert server.ok("GET", "content/tags/")["count"] == 0
    assert server.artifacts()["count"] == 0


def test_unreachable_upstream_fails_the_task(lazyreg: Lazyreg, tmp_path: Path) -> None:
    from tests.rig import free_port
    dead = Upstream(tmp_path, f"http://127.0.0.1:{free_port()}", {})
    task = lazyreg.setup_mirror(dead, "mirror", "fixtures/small")
    assert task["state"] == "failed"
    assert "Unavailable" in task["error"] and "127.0.0.1" in task["error"]
    _assert_nothing_written(lazyreg)


def test_every_tag_broken_fails_the_task_and_writes_nothing(
        lazyreg: Lazyreg, upstream: Upstream, tmp_path: Path) -> None:
    from tests.rig import FaultProxy
    proxy = FaultProxy(upstream.url, tmp_path / "faults.log")
    try:
        proxy.configure(match=r"^GET /v2/.+/manifests/", corrupt_at=0, reset=True)
        task = lazyreg.setup_mirror(Upstream(tmp_path, proxy.url, {}), "mirror",
                                    "fixtures/multiarch")
        assert task["state"] == "failed"
        assert "no tag could be synced" in task["error"], task["error"]
        # Each tag is named with why: its bytes do not hash to the digest claimed.
        assert len(task["warnings"]) == 2, task["warnings"]
        for tag in ("latest", "oci-index"):
            assert any(f"tag '{tag}'" in w and "hash to" in w for w in task["warnings"])
        _assert_nothing_written(lazyreg)
    finally:
        proxy.stop()
