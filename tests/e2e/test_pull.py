"""Pulls with real clients (skopeo, podman) through lazyreg from the real upstream."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from tests.conftest import ON_BOTH_BACKENDS
from tests.e2e.expect import child, layers
from tests.rig import (
    PASSWORD,
    USER,
    Lazyreg,
    Upstream,
    dir_blobs,
    podman_pull,
    skopeo_copy,
)

pytestmark = pytest.mark.e2e

BLOB_GET = r"^/v2/.+/blobs/sha256:"


def wait_stored(server: Lazyreg, digest: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while digest not in server.artifact_digests():
        assert time.monotonic() < deadline, f"{digest} was not stored within {timeout}s"
        time.sleep(0.05)


def manifest_digest(copy_dir: Path) -> str:
    return "sha256:" + hashlib.sha256((copy_dir / "manifest.json").read_bytes()).hexdigest()


@ON_BOTH_BACKENDS
def test_lazy_pull_of_small_with_skopeo_and_podman(lazyreg: Lazyreg, upstream: Upstream,
                                                   tmp_path: Path) -> None:
    lazyreg.setup_mirror(upstream, "mirror", "fixtures/small")
    v1, v2 = upstream.tag("fixtures/small", "v1"), upstream.tag("fixtures/small", "v2")
    before = lazyreg.artifact_digests()

    skopeo_copy(f"{lazyreg.host}/mirror:v1", tmp_path / "v1")
    assert manifest_digest(tmp_path / "v1") == v1["digest"]
    assert dir_blobs(tmp_path / "v1") == v1["blobs"]
    for digest in layers(v1):  # stored just after the client's last byte
        wait_stored(lazyreg, digest)
    # The cache grew by exactly the layers of v1.
    assert lazyreg.artifact_digests() - before == layers(v1)

    mark = upstream.mark()
    skopeo_copy(f"{lazyreg.host}/mirror:v1", tmp_path / "v1-again")
    assert dir_blobs(tmp_path / "v1-again") == v1["blobs"]
    assert upstream.count("GET", BLOB_GET, since=mark) == 0

    mark = upstream.mark()
    skopeo_copy(f"{lazyreg.host}/mirror:v2", tmp_path / "v2")
    assert dir_blobs(tmp_path / "v2") == v2["blobs"]
    new_layers = layers(v2) - layers(v1)
    assert len(new_layers) == 1
    fetched = {p.rsplit("/", 1)[1] for m, p, _ in upstream.requests(mark)
               if m == "GET" and "/blobs/" in p}
    assert fetched == new_layers

    # podman (which raises on failure) gets v1 from storage: nothing more upstream.
    mark = upstream.mark()
    podman_pull(f"{lazyreg.host}/mirror:v1", tmp_path / "podman")
    assert upstream.count("GET", BLOB_GET, since=mark) == 0


@ON_BOTH_BACKENDS
def test_streamed_relays_without_storing(lazyreg: Lazyreg, upstream: Upstream,
                                         tmp_path: Path) -> None:
    lazyreg.setup_mirror(upstream, "mirror", "fixtures/small", policy="streamed")
    v1 = upstream.tag("fixtures/small", "v1")
    before = lazyreg.artifacts()["count"]
    skopeo_copy(f"{lazyreg.host}/mirror:v1", tmp_path / "a")
    assert dir_blobs(tmp_path / "a") == v1["blobs"]
    assert lazyreg.artifacts()["count"] == before
    mark = upstream.mark()
    skopeo_copy(f"{lazyreg.host}/mirror:v1", tmp_path / "b")
    assert upstream.count("GET", BLOB_GET, since=mark) == len(layers(v1))  # relayed again


@ON_BOTH_BACKENDS
def test_immediate_pull_makes_no_upstream_request(lazyreg: Lazyreg, upstream: Upstream,
                                                  tmp_path: Path) -> None:
    lazyreg.setup_mirror(upstream, "mirror", "fixtures/small", policy="immediate")
    mark = upstream.mark()
    skopeo_copy(f"{lazyreg.host}/mirror:v1", tmp_path / "a")
    podman_pull(f"{lazyreg.host}/mirror:v2", tmp_path / "podman")
    assert upstream.requests(mark) == []


@pytest.mark.parametrize(("tag", "lazyreg"), [("latest", "filesystem"),
                                              ("oci-index", "filesystem"),
                                              ("oci-index", "s3")], indirect=["lazyreg"])
def test_multiarch_pulls_store_only_the_platform_asked_for(
        lazyreg: Lazyreg, upstream: Upstream, tmp_path: Path, tag: str) -> None:
    lazyreg.setup_mirror(upstream, "mirror", "fixtures/multiarch")
    entry = upstream.tag("fixtures/multiarch", tag)
    arm, amd = child(entry, "arm64"), child(entry, "amd64")
    before = lazyreg.artifact_digests()

    skopeo_copy(f"{lazyreg.host}/mirror:{tag}", tmp_path / "arm", "--override-arch", "arm64")
    assert dir_blobs(tmp_path / "arm") == arm["blobs"]
    for digest in layers(arm):  # stored just after the client's last byte
        wait_stored(lazyreg, digest)
    assert lazyreg.artifact_digests() - before == layers(arm)

    skopeo_copy(f"{lazyreg.host}/mirror:{tag}", tmp_path / "all", "--all")
    for digest in layers(amd):
        wait_stored(lazyreg, digest)
    assert lazyreg.artifact_digests() - before == layers(arm) | layers(amd)
    podman_pull(f"{lazyreg.host}/mirror:{tag}", tmp_path / "podman")


def test_lazy_fetch_through_token_auth_upstream(lazyreg: Lazyreg, upstream_token: Upstream,
                                                tmp_path: Path) -> None:
    lazyreg.setup_mirror(upstream_token, "mirror", "fixtures/small", username=USER,
                         password=PASSWORD)
    v2 = upstream_token.tag("fixtures/small", "v2")
    skopeo_copy(f"{lazyreg.host}/mirror:v2", tmp_path / "a")
    assert dir_blobs(tmp_path / "a") == v2["blobs"]
    assert layers(v2) <= lazyreg.artifact_digests()


def test_big_blob_lazily_with_flat_memory(lazyreg: Lazyreg, upstream: Upstream,
                                          tmp_path: Path) -> None:
    lazyreg.setup_mirror(upstream, "mirror", "fixtures/big")
    big = upstream.tag("fixtures/big", "latest")
    skopeo_copy(f"{lazyreg.host}/mirror:latest", tmp_path / "big")
    assert dir_blobs(tmp_path / "big") == big["blobs"]
    peak_mib = lazyreg.peak_rss_kib() / 1024
    print(f"\nserver peak RSS after a lazy 64 MiB pull: {peak_mib:.1f} MiB")
    assert peak_mib < 150


def test_pinned_distribution_keeps_serving_its_version(lazyreg: Lazyreg, upstream: Upstream
                                                       ) -> None:
    lazyreg.setup_mirror(upstream, "mirror", "fixtures/small", include_tags=["v1"])
    lazyreg.ok("POST", "distributions/", {"name": "pinned", "base_path": "team/pinned",
                                          "repository": "mirror", "repository_version": 1})
    lazyreg.ok("PATCH", "remotes/mirror/", {"include_tags": None})
    assert lazyreg.sync("mirror", "mirror")["created_resources"] == [
        "repositories/mirror/versions/2/"]
    from tests.rig import http_json
    _, pinned = http_json("GET", f"{lazyreg.url}/v2/team/pinned/tags/list")
    _, latest = http_json("GET", f"{lazyreg.url}/v2/mirror/tags/list")
    assert pinned["tags"] == ["v1"]
    assert latest["tags"] == ["latest", "v1", "v2"]
    status, body = http_json("GET", f"{lazyreg.url}/v2/team/pinned/manifests/v2")
    assert status == 404 and body["errors"][0]["code"] == "MANIFEST_UNKNOWN"


def test_registry_errors_use_oci_codes(lazyreg: Lazyreg, upstream: Upstream) -> None:
    from tests.rig import http_json
    lazyreg.setup_mirror(upstream, "small", "fixtures/small", policy="immediate")
    lazyreg.setup_mirror(upstream, "oci", "fixtures/oci", policy="immediate")
    oci_layer = next(iter(layers(upstream.tag("fixtures/oci", "1.0"))))
    small_layer = next(iter(layers(upstream.tag("fixtures/small", "v1"))))
    v2 = f"{lazyreg.url}/v2"

    def code(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        status, body = http_json("GET", url, headers=headers)
        return status, body["errors"][0]["code"] if isinstance(body, dict) else body

    assert code(f"{v2}/nowhere/manifests/v1") == (404, "NAME_UNKNOWN")
    assert code(f"{v2}/small/manifests/nope") == (404, "MANIFEST_UNKNOWN")
    assert code(f"{v2}/small/blobs/sha256:xyz") == (400, "DIGEST_INVALID")
    assert code(f"{v2}/small/manifests/sha256:abc") == (400, "DIGEST_INVALID")
    # Stored, but for another repository: no cross-repository leak.
    assert code(f"{v2}/small/blobs/{oci_layer}") == (404, "BLOB_UNKNOWN")
    size = upstream.index["blobs"][small_layer]
    status, _ = code(f"{v2}/small/blobs/{small_layer}", {"Range": f"bytes={size}-"})
    assert status == 416


def test_manifest_and_blob_headers_ranges_and_paging(lazyreg: Lazyreg, upstream: Upstream
                                                     ) -> None:
    import urllib.request
    lazyreg.setup_mirror(upstream, "mirror", "fixtures/multiarch")
    entry = upstream.tag("fixtures/multiarch", "latest")
    accept = ("application/vnd.docker.distribution.manifest.list.v2+json,"
              "application/vnd.docker.distribution.manifest.v2+json")
    for method in ("GET", "HEAD"):
        req = urllib.request.Request(f"{lazyreg.url}/v2/mirror/manifests/latest", method=method,
                                     headers={"Accept": accept})
        with urllib.request.urlopen(req) as resp:
            body = resp.read()
            assert resp.headers["Docker-Content-Digest"] == entry["digest"]
            assert resp.headers["Content-Type"] == entry["mediaType"]
            assert int(resp.headers["Content-Length"]) == entry["size"]
        if method == "GET":
            assert "sha256:" + hashlib.sha256(body).hexdigest() == entry["digest"]
    # A client that cannot read lists gets the amd64 image.
    req = urllib.request.Request(
        f"{lazyreg.url}/v2/mirror/manifests/latest",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(req) as resp:
        assert resp.headers["Docker-Content-Digest"] == child(entry, "amd64")["digest"]

    layer = next(iter(layers(child(entry, "arm64"))))
    from tests.rig import http_json
    status, _ = http_json("GET", f"{lazyreg.url}/v2/mirror/blobs/{layer}",
                          headers={"Range": f"bytes={upstream.index['blobs'][layer]}-"})
    assert status == 416
    assert layer not in lazyreg.artifact_digests()  # a refused range fetches nothing
    for phase, upstream_gets in (("lazy", 1), ("stored", 0)):
        mark = upstream.mark()
        req = urllib.request.Request(f"{lazyreg.url}/v2/mirror/blobs/{layer}",
                                     headers={"Range": "bytes=10-19"})
        with urllib.request.urlopen(req) as resp:
            assert resp.status == 206
            part = resp.read()
        with urllib.request.urlopen(f"{lazyreg.url}/v2/mirror/blobs/{layer}") as resp:
            whole = resp.read()
        assert part == whole[10:20]
        assert "sha256:" + hashlib.sha256(whole).hexdigest() == layer
        assert upstream.count("GET", BLOB_GET, since=mark) == upstream_gets, phase
        wait_stored(lazyreg, layer)  # the commit may follow the last byte

    with urllib.request.urlopen(f"{lazyreg.url}/v2/mirror/tags/list?n=1") as resp:
        assert json.loads(resp.read())["tags"] == ["latest"]
        link = resp.headers["Link"]
    assert link == '</v2/mirror/tags/list?n=1&last=latest>; rel="next"'
    with urllib.request.urlopen(f"{lazyreg.url}{link[1:link.index('>')]}") as resp:
        assert json.loads(resp.read())["tags"] == ["oci-index"]
        assert "Link" not in resp.headers
    with urllib.request.urlopen(f"{lazyreg.url}/v2/_catalog") as resp:
        assert json.loads(resp.read()) == {"repositories": ["mirror"]}
    with urllib.request.urlopen(f"{lazyreg.url}/v2/") as resp:
        assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_upstream_down_while_fetching_gives_an_error_and_stores_nothing(
        lazyreg: Lazyreg, tmp_path: Path) -> None:
    from tests.rig import http_json, start_upstream
    up = start_upstream(tmp_path / "up", seed=["--big-mib", "0", "--many-tags", "0"])
    lazyreg.setup_mirror(up, "mirror", "fixtures/small")
    up.stop()
    before = lazyreg.artifacts()["count"]
    layer = next(iter(layers(up.tag("fixtures/small", "v1"))))
    status, body = http_json("GET", f"{lazyreg.url}/v2/mirror/blobs/{layer}")
    assert status == 502, body
    assert body["errors"][0]["code"] == "UNAVAILABLE"
    assert lazyreg.artifacts()["count"] == before
    storage = lazyreg.data_dir / "storage" / "sha256" / layer[7:9] / layer[7:]
    assert not storage.exists()
