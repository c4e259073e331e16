"""The same promises on PostgreSQL: sync, lazy pull, and two servers sharing one download."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e.expect import layers, repo_truth
from tests.e2e.test_faults import _pull_many, big_layer, blob_gets, via
from tests.rig import FaultProxy, Upstream, dir_blobs, skopeo_copy, start_lazyreg

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def test_sync_and_lazy_pull_on_postgres(postgres_url: str, upstream: Upstream,
                                        tmp_path: Path) -> None:
    server = start_lazyreg(tmp_path / "data", database_url=postgres_url)
    try:
        assert server.ok("GET", "status/")["database"] == "postgresql"
        task = server.setup_mirror(upstream, "mirror", "fixtures/multiarch")
        assert task["state"] == "completed", task
        truth = repo_truth(upstream.index, "fixtures/multiarch")
        assert server.artifact_digests() == truth["manifests"] | truth["configs"]
        assert server.sync("mirror", "mirror")["created_resources"] == []

        entry = upstream.tag("fixtures/multiarch", "latest")
        skopeo_copy(f"{server.host}/mirror:latest", tmp_path / "all", "--all")
        assert server.artifact_digests() == truth["manifests"] | truth["configs"] | layers(entry)
        skopeo_copy(f"{server.host}/mirror:latest", tmp_path / "one")
        assert dir_blobs(tmp_path / "one")
    finally:
        server.stop()


def test_two_servers_on_postgres_share_one_download(postgres_url: str, upstream: Upstream,
                                                    tmp_path: Path) -> None:
    faults = FaultProxy(upstream.url, tmp_path / "faults.log")
    first = start_lazyreg(tmp_path / "data", database_url=postgres_url)
    second = start_lazyreg(tmp_path / "data", database_url=postgres_url)
    try:
        faults.configure(rate_kib=32 * 1024, reset=True)
        first.setup_mirror(via(faults.url, upstream), "mirror", "fixtures/big")
        digest, _ = big_layer(upstream)
        mark = upstream.mark()
        urls = [f"{s.url}/v2/mirror/blobs/{digest}" for s in (first, second)] * 8
        results = asyncio.run(_pull_many(urls))
        assert all(r[0] == digest for r in results)
        assert blob_gets(upstream, digest, mark) == [200]
        assert first.ok("GET", "check/")["ok"]
    finally:
        first.stop()
        second.stop()
        faults.stop()
