"""A deleted repository stays deleted: nothing of it is served through a repository made after it.

SQLite gives a new row the id of the highest deleted one, so a repository
deleted and created again under the same name gets the same id and, after
one sync, the same version number: exactly what the lookup cache once used
as its key. These tests warm every cache, then look for the old content.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import ON_BOTH_BACKENDS
from tests.e2e.expect import layers
from tests.e2e.v2 import ACCEPT_ALL, Answer, repository_row, request, sha256
from tests.rig import Lazyreg, Upstream, start_lazyreg

pytestmark = pytest.mark.e2e

REREAD_INTERVAL = 1.0  # LookupCache.ttl, the promise to other server processes


def get(server: Lazyreg, path: str, method: str = "GET") -> Answer:
    return request(f"{server.url}/v2/{path}", method, {"Accept": ACCEPT_ALL})


def warm(server: Lazyreg, v1: dict[str, Any], layer: str) -> None:
    """Every read a client makes, so that every cached answer exists."""
    for ref in ("v1", v1["digest"]):
        for method in ("GET", "HEAD"):
            answer = get(server, f"app/manifests/{ref}", method)
            assert answer.status == 200
            assert answer.headers["Docker-Content-Digest"] == v1["digest"]
    pulled = get(server, f"app/blobs/{layer}")  # fetched lazily, then stored
    assert (pulled.status, sha256(pulled.body)) == (200, layer)
    assert get(server, f"app/blobs/{layer}", "HEAD").status == 200
    assert "v1" in get(server, "app/tags/list").json()["tags"]


def replace_repository(server: Lazyreg, upstream: Upstream) -> None:
    """Create repository `app` again, served at `app`, and sync other content into it."""
    server.ok("POST", "remotes/", {"name": "other", "url": upstream.url,
                                   "upstream_name": "fixtures/oci", "policy": "on_demand"})
    server.ok("POST", "repositories/", {"name": "app"})
    server.ok("POST", "distributions/", {"name": "app", "base_path": "app", "repository": "app"})
    assert server.sync("app", "other")["state"] == "completed"


def assert_old_content_gone(server: Lazyreg, upstream: Upstream, v1: dict[str, Any],
                            layer: str) -> None:
    for ref in ("v1", v1["digest"]):
        for method in ("GET", "HEAD"):
            answer = get(server, f"app/manifests/{ref}", method)
            assert answer.status == 404, (ref, method, answer.body)
            if method == "GET":
                assert answer.code == "MANIFEST_UNKNOWN"
    for method in ("GET", "HEAD"):
        assert get(server, f"app/blobs/{layer}", method).status == 404
    assert "v1" not in get(server, "app/tags/list").json()["tags"]
    # The new repository's own content is served.
    new = upstream.tag("fixtures/oci", "1.0")
    answer = get(server, "app/manifests/1.0")
    assert (answer.status, sha256(answer.body)) == (200, new["digest"])


def old_layer(upstream: Upstream) -> tuple[dict[str, Any], str]:
    """small:v1 and a layer of it that no fixtures/oci tag holds."""
    v1 = upstream.tag("fixtures/small", "v1")
    oci = set().union(*(set(t["blobs"]) for t in upstream.index["repos"]["fixtures/oci"].values()))
    layer = sorted(layers(v1) - oci)[0]
    return v1, layer


@ON_BOTH_BACKENDS
def test_a_new_repository_with_a_deleted_ones_id_serves_none_of_its_content(
        lazyreg: Lazyreg, upstream: Upstream) -> None:
    v1, layer = old_layer(upstream)
    lazyreg.setup_mirror(upstream, "app", "fixtures/small")
    warm(lazyreg, v1, layer)
    old_id, old_uid = repository_row(lazyreg.data_dir, "app")

    lazyreg.ok("DELETE", "repositories/app/")
    replace_repository(lazyreg, upstream)
    new_id, new_uid = repository_row(lazyreg.data_dir, "app")
    assert (new_id, lazyreg.ok("GET", "repositories/app/")["latest_version"]) == (old_id, 1)
    assert new_uid != old_uid
    assert_old_content_gone(lazyreg, upstream, v1, layer)


def test_a_delete_through_one_server_is_seen_by_another_within_the_reread_interval(
        lazyreg: Lazyreg, upstream: Upstream) -> None:
    v1, layer = old_layer(upstream)
    lazyreg.setup_mirror(upstream, "app", "fixtures/small")
    other = start_lazyreg(lazyreg.data_dir)  # same database, same storage
    try:
        warm(other, v1, layer)
        lazyreg.ok("DELETE", "repositories/app/")
        deleted = time.monotonic()
        while (answer := get(other, "app/manifests/v1")).status == 200:
            assert time.monotonic() - deleted < 10, "the delete was never seen"
            time.sleep(0.02)
        seen_after = time.monotonic() - deleted
        assert (answer.status, answer.code) == (404, "NAME_UNKNOWN")
        # The interval, plus room for a loaded machine's request latency.
        assert seen_after < REREAD_INTERVAL + 0.75, seen_after

        # The new repository gets the old id through the first server; the
        # second still holds its answers about the old one.
        replace_repository(lazyreg, upstream)
        time.sleep(REREAD_INTERVAL)  # what the second may serve stale, by contract
        assert_old_content_gone(other, upstream, v1, layer)
    finally:
        other.stop()
