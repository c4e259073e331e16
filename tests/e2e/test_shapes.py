"""Awkward manifest shapes in a real registry, synced through a slow proxy.

The upstream (distribution 2.8, empty at start) gets, by push: a manifest of
about 3.9 MB, a 400-layer manifest, an index of an index of images, an OCI
artifact whose `subject` is one of the images, and an image with a foreign
layer. The rig's fault proxy hands every manifest and blob body over in
small, slow pieces.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.pusher import (
    DOCKER_CONFIG,
    DOCKER_FOREIGN,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    OCI_EMPTY,
    OCI_MANIFEST,
    Pusher,
    descriptor,
    sha256,
)
from tests.rig import FaultProxy, Lazyreg, Upstream, start_upstream

REGISTRY_BIN = "/usr/bin/docker-registry"

pytestmark = pytest.mark.e2e

AWKWARD, MIXED = "shapes/awkward", "shapes/mixed"


@dataclass
class Shapes:
    upstream: Upstream
    manifests: dict[str, bytes] = field(default_factory=dict)  # of AWKWARD, by digest
    blobs: dict[str, bytes] = field(default_factory=dict)  # of AWKWARD, by digest
    foreign: str = ""
    huge: str = ""


def _push_awkward(p: Pusher) -> tuple[str, str]:
    # About 3.9 MB: 39,000 annotations of 100 bytes each.
    annotations = {f"k{i:06d}": "v" * 87 for i in range(39_000)}
    huge = p.image(AWKWARD, "huge", b'{"shape": "huge"}', [b"layer of the huge one"],
                   annotations=annotations)
    p.image(AWKWARD, "layers-400", b'{"shape": "400 layers"}',
            [b"layer %d of 400" % i for i in range(400)])
    images = [p.image(AWKWARD, None, b'{"shape": "nested %d"}' % i, [b"nested layer %d" % i])
              for i in range(2)]
    inner = p.index(AWKWARD, None, images)
    p.index(AWKWARD, "nested", [inner])
    sbom, empty = b'{"spdxVersion": "SPDX-2.3"}', b"{}"
    p.blob(AWKWARD, sbom)
    p.blob(AWKWARD, empty)
    p.manifest(AWKWARD, "artifact", {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/spdx+json",
        "config": descriptor(OCI_EMPTY, empty),
        "layers": [descriptor("application/spdx+json", sbom)],
        "subject": {"mediaType": OCI_MANIFEST, "digest": images[0],
                    "size": len(p.manifests[images[0]])}})
    config, own, foreign = b'{"os": "windows"}', b"own layer", b"foreign layer, never pushed"
    p.blob(AWKWARD, config)
    p.blob(AWKWARD, own)
    p.manifest(AWKWARD, "foreign", {
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, config),
        "layers": [descriptor(DOCKER_LAYER, own),
                   descriptor(DOCKER_FOREIGN, foreign,
                              urls=["https://example.com/windows/base.tar.gz"])]})
    return huge, sha256(foreign)


def _allow_foreign_layers(up: Upstream) -> subprocess.Popen[bytes]:
    """Restart the rig's registry with manifest validation off, as Docker Hub has it for
    Windows images: distribution 2.8 otherwise refuses every foreign layer URL."""
    up.stop()
    config = up.dir / "config.yml"
    config.write_text(config.read_text() + "validation:\n  disabled: true\n")
    with (up.dir / "registry.log").open("ab") as log:
        proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    # Where `upstream stop` looks for the process to stop.
    (up.dir / "registry.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(up.url + "/v2/", timeout=2):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise AssertionError("the registry did not restart") from None
            time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise AssertionError("the registry did not answer after its restart")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shapes]:
    up = start_upstream(tmp_path_factory.mktemp("upstream-shapes"))
    registry: subprocess.Popen[bytes] | None = None
    try:
        registry = _allow_foreign_layers(up)
        p = Pusher(up.url)
        huge, foreign = _push_awkward(p)
        shapes = Shapes(up, dict(p.manifests), dict(p.blobs), foreign, huge)
        for n in range(3):
            p.image(MIXED, f"tag{n}", b'{"mixed": %d}' % n, [b"mixed layer %d" % n])
        p.close()
        yield shapes
    finally:
        up.stop()
        if registry is not None:
            registry.wait(15)


@pytest.fixture
def slow_proxy(shapes: Shapes, tmp_path: Path) -> Iterator[FaultProxy]:
    proxy = FaultProxy(shapes.upstream.url, tmp_path / "faults.log")
    yield proxy
    proxy.stop()


def _get(server: Lazyreg, path: str, method: str = "GET") -> tuple[int, bytes]:
    req = urllib.request.Request(f"{server.url}/v2/{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _mirror(server: Lazyreg, proxy: FaultProxy, name: str, upstream_name: str) -> None:
    server.ok("POST", "remotes/", {"name": name, "url": proxy.url,
                                   "upstream_name": upstream_name})
    server.ok("POST", "repositories/", {"name": name})
    server.ok("POST", "distributions/", {"name": name, "base_path": name, "repository": name})


def test_awkward_shapes_through_a_slow_proxy(lazyreg: Lazyreg, shapes: Shapes,
                                             slow_proxy: FaultProxy) -> None:
    assert 3_800_000 < len(shapes.manifests[shapes.huge]) < 4 * 1024 * 1024
    slow_proxy.configure(match=r"^GET /v2/.+/(manifests|blobs)/", rate_kib=512, reset=True)
    _mirror(lazyreg, slow_proxy, "awkward", AWKWARD)
    started = time.monotonic()
    task = lazyreg.sync("awkward", "awkward")
    print(f"\nsync of the awkward shapes through the slow proxy: {time.monotonic() - started:.1f}s")
    assert task["state"] == "completed", task
    assert task["warnings"] == []
    assert slow_proxy.counters()["matched"] > 0

    for digest, data in shapes.manifests.items():
        status, body = _get(lazyreg, f"awkward/manifests/{digest}")
        assert status == 200 and body == data, digest
    started = time.monotonic()
    for digest, data in shapes.blobs.items():
        status, body = _get(lazyreg, f"awkward/blobs/{digest}")
        assert status == 200 and body == data, digest
    print(f"{len(shapes.blobs)} blobs pulled lazily: {time.monotonic() - started:.1f}s")
    for method in ("HEAD", "GET"):
        assert _get(lazyreg, f"awkward/blobs/{shapes.foreign}", method)[0] == 404


def test_a_bad_tag_among_good_ones(lazyreg: Lazyreg, shapes: Shapes,
                                   slow_proxy: FaultProxy) -> None:
    slow_proxy.configure(match=rf"^GET /v2/{MIXED}/manifests/tag1$", corrupt_at=10, reset=True)
    _mirror(lazyreg, slow_proxy, "mixed", MIXED)

    task = lazyreg.ok("POST", "repositories/mixed/sync/", {"remote": "mixed", "strict": True})
    task = lazyreg.wait_task(task)
    assert task["state"] == "failed"
    assert "'tag1'" in task["error"] and "strict" in task["error"], task["error"]
    assert lazyreg.ok("GET", "repositories/mixed/")["latest_version"] == 0

    task = lazyreg.sync("mixed", "mixed")
    assert task["state"] == "completed", task
    assert task["created_resources"] == ["repositories/mixed/versions/1/"]
    assert len(task["warnings"]) == 1 and "tag 'tag1' skipped" in task["warnings"][0], task
    tags = lazyreg.ok("GET", "content/tags/?repository=mixed")["results"]
    assert {t["name"] for t in tags} == {"tag0", "tag2"}
