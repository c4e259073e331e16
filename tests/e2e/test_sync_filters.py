"""Sync filters against the real distribution registry (issue 24): `re:` tag regexes,
pinned digests, and the platform filter (other children fetched on first request)."""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.pusher import OCI_INDEX, Pusher, sha256
from tests.rig import Lazyreg, Upstream, run, start_upstream

pytestmark = pytest.mark.e2e

MANY = "filters/many"
MULTI = "filters/multi"
LAYERS = "filters/layers"
PLATFORMS = [("linux", "amd64", ""), ("linux", "arm64", "v8"), ("linux", "s390x", ""),
             ("linux", "ppc64le", ""), ("linux", "arm", "v7"), ("linux", "386", "")]


def many_tags() -> list[str]:
    """1,000 tags, 600 of which match ^v1\\.[0-9]+$."""
    return ([f"v1.{n}" for n in range(600)] + [f"v1.{n}-rc" for n in range(150)]
            + [f"v10.{n}" for n in range(150)] + [f"xv1.{n}" for n in range(100)])


@dataclass
class Filters:
    upstream: Upstream
    image: str  # the manifest every tag of MANY names
    pinned: str  # an untagged manifest of MANY
    index: str  # the 6-platform index of MULTI, tagged "multi"
    children: dict[str, str]  # "os/arch[/variant]" -> child digest
    index_bytes: bytes
    layered: str  # an image of LAYERS with 4 layers, tagged "four"
    layers: list[str]


@pytest.fixture(scope="module")
def filters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filters]:
    up = start_upstream(tmp_path_factory.mktemp("upstream-filters"))
    try:
        p = Pusher(up.url)
        image = p.image(MANY, "seed", b'{"many": 1}', [b"many layer"])
        pinned = p.image(MANY, None, b'{"pinned": 1}', [b"pinned layer"])
        doc = json.loads(p.manifests[image])
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda tag: p.manifest(MANY, tag, doc), many_tags()))
        children: dict[str, str] = {}
        entries = []
        for os_, arch, variant in PLATFORMS:
            name = "/".join(x for x in (os_, arch, variant) if x)
            digest = p.image(MULTI, None, json.dumps({"architecture": arch, "os": os_}).encode(),
                             [f"layer of {name}".encode()])
            children[name] = digest
            platform = {"os": os_, "architecture": arch, **({"variant": variant} if variant
                                                            else {})}
            entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "digest": digest, "size": len(p.manifests[digest]),
                            "platform": platform})
        index = p.manifest(MULTI, "multi", {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                            "manifests": entries})
        index_bytes = p.manifests[index]
        layer_bytes = [os.urandom(256 * 1024) for _ in range(4)]
        layered = p.image(LAYERS, "four", b'{"layers": 4}', layer_bytes)
        p.close()
        yield Filters(up, image, pinned, index, children, index_bytes, layered,
                      [sha256(b) for b in layer_bytes])
    finally:
        up.stop()


def _setup(server: Lazyreg, up: Upstream, name: str, upstream_name: str, **remote: object
           ) -> dict[str, object]:
    task = server.setup_mirror(up, name, upstream_name, **remote)
    assert task["state"] == "completed", task
    return task


def test_a_regex_selects_exactly_the_matching_tags_and_a_digest_pins(
        lazyreg: Lazyreg, filters: Filters) -> None:
    up = filters.upstream
    _setup(lazyreg, up, "many", MANY, include_tags=[r"re:^v1\.[0-9]+$", filters.pinned],
           exclude_tags=["re:v1\\.5[0-9]"])
    tags = {t["name"] for t in lazyreg.ok(
        "GET", "content/tags/?repository=many&limit=1000")["results"]}
    expected = {t for t in many_tags() if re.fullmatch(r"v1\.[0-9]+", t)
                and not re.fullmatch(r"v1\.5[0-9]", t)}
    assert tags == expected
    assert len(tags) == 590
    manifests = {m["digest"] for m in lazyreg.ok(
        "GET", "content/manifests/?repository=many&limit=1000")["results"]}
    assert manifests == {filters.image, filters.pinned}  # pinned, untagged
    status, _ = _get(lazyreg, f"/v2/many/manifests/{filters.pinned}")
    assert status == 200


def _get(server: Lazyreg, path: str, method: str = "GET") -> tuple[int, bytes]:
    req = urllib.request.Request(server.url + path, method=method, headers={
        "Accept": OCI_INDEX + ", application/vnd.oci.image.manifest.v1+json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _skopeo(server: Lazyreg, arch: str, dest: Path) -> None:
    run(["skopeo", "--override-os", "linux", "--override-arch", arch, "copy",
         "--src-tls-verify=false", f"docker://{server.host}/multi:multi", f"dir:{dest}"],
        timeout=120)


def test_platform_filter_syncs_two_children_and_fetches_another_on_demand(
        lazyreg: Lazyreg, filters: Filters, tmp_path: Path) -> None:
    up = filters.upstream
    mark = up.mark()
    _setup(lazyreg, up, "multi", MULTI, platforms=["linux/amd64", "linux/arm64"])
    # The tag's GET, then 2 children by digest, not 6.
    assert up.count("GET", r"/manifests/sha256:", since=mark) == 2
    assert up.count("GET", r"/manifests/multi", since=mark) == 1
    got = set()
    for line in up.requests(mark):
        if line[0] == "GET" and "/manifests/sha256:" in line[1]:
            got.add(line[1].rsplit("/", 1)[1])
    assert got == {filters.children["linux/amd64"], filters.children["linux/arm64/v8"]}
    # The index is stored byte-exact: its digest is the upstream's.
    status, body = _get(lazyreg, "/v2/multi/manifests/multi")
    assert status == 200 and body == filters.index_bytes
    # Every child is in the version, the others recorded but not fetched.
    manifests = {m["digest"] for m in lazyreg.ok(
        "GET", "content/manifests/?repository=multi&limit=1000")["results"]}
    assert manifests == {filters.index, *filters.children.values()}

    mark = up.mark()
    _skopeo(lazyreg, "s390x", tmp_path / "first")
    assert up.count("GET", r"/manifests/", since=mark) == 1
    s390x = filters.children["linux/s390x"]
    assert up.count("GET", rf"/manifests/{s390x}", since=mark) == 1
    assert json.loads((tmp_path / "first" / "manifest.json").read_text())["config"]
    mark = up.mark()
    _skopeo(lazyreg, "s390x", tmp_path / "second")
    assert up.count("GET", r"/manifests/", since=mark) == 0
    # A re-sync leaves the fetched child as it is, and fetches no manifest.
    mark = up.mark()
    task = lazyreg.sync("multi", "multi")
    assert task["state"] == "completed" and not task["created_resources"], task
    assert up.count("GET", r"/manifests/", since=mark) == 0


def test_prefetch_starts_the_layers_on_the_first_manifest_get(
        lazyreg: Lazyreg, filters: Filters) -> None:
    up = filters.upstream
    _setup(lazyreg, up, "layers", LAYERS, prefetch="platform")
    assert not set(filters.layers) & lazyreg.artifact_digests()
    # A HEAD starts nothing.
    assert _get(lazyreg, "/v2/layers/manifests/four", "HEAD")[0] == 200
    mark = up.mark()
    status, _ = _get(lazyreg, "/v2/layers/manifests/four")
    assert status == 200
    # No client asked for a blob: the layers are stored all the same.
    deadline = time.monotonic() + 30
    while set(filters.layers) - lazyreg.artifact_digests():
        assert time.monotonic() < deadline, "the layers were not prefetched"
        time.sleep(0.1)
    # The client's blob GETs are served; the upstream saw one GET per layer.
    for layer in filters.layers:
        assert _get(lazyreg, f"/v2/layers/blobs/{layer}")[0] == 200
    for layer in filters.layers:
        assert up.count("GET", rf"/blobs/{layer}", since=mark) == 1
    # A second GET of the manifest starts nothing more.
    assert _get(lazyreg, "/v2/layers/manifests/four")[0] == 200
    assert up.count("GET", r"/blobs/", since=mark) == len(filters.layers)


def test_each_request_and_task_says_what_it_caused_upstream(
        lazyreg: Lazyreg, filters: Filters) -> None:
    up = filters.upstream
    task = _setup(lazyreg, up, "acct", LAYERS)
    # The sync's task: the tag list, the manifest and the config (and the /v2/ ping).
    assert task["progress"]["upstream"]["requests"] >= 3, task
    layer = filters.layers[0]
    status, body = _get(lazyreg, f"/v2/acct/blobs/{layer}")
    assert status == 200 and len(body) == 256 * 1024
    assert _get(lazyreg, f"/v2/acct/blobs/{layer}")[0] == 200  # stored: causes nothing
    deadline = time.monotonic() + 10
    pattern = re.compile(rf"GET /v2/acct/blobs/{layer} caused upstream (\d+) requests (\d+)B")
    while not (found := pattern.findall(lazyreg.logfile.read_text())):
        assert time.monotonic() < deadline, "no upstream line for the lazy blob GET"
        time.sleep(0.1)
    assert found == [("1", str(256 * 1024))]
    with urllib.request.urlopen(lazyreg.url + "/metrics", timeout=30) as resp:
        metrics = resp.read().decode()
    assert re.search(r'lazyreg_upstream_requests_total\{distribution="acct",kind="blob",'
                     r'method="GET",status="200"\} 1\.0', metrics), metrics
    assert re.search(r'lazyreg_upstream_blob_bytes_total\{distribution="acct"\} 262144\.0',
                     metrics)
