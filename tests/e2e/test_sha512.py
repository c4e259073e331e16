"""sha512 content end to end: distribution 2.8 refuses it, so the upstream is tests/hostile.py.

A manifest whose config and layer are sha512 blobs is synced, stored and served,
on SQLite and on PostgreSQL (whose digest columns must hold 135 characters).
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile import Hostile, digest, running
from tests.rig import Lazyreg, start_lazyreg

pytestmark = pytest.mark.e2e

CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
LAYER = hashlib.shake_256(b"a sha512 layer").digest(300_000)


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    with running(Hostile()) as up:
        yield up


def _get(server: Lazyreg, path: str, method: str = "GET") -> tuple[int, bytes, str]:
    req = urllib.request.Request(f"{server.url}/v2/{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read(), resp.headers.get("Docker-Content-Digest", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), ""


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_sha512_blobs_are_synced_stored_and_served(
        database: str, hostile: Hostile, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("postgres_url") if database == "postgresql" else None
    manifest = hostile.add_image("app", "v1", CONFIG, [LAYER], algorithm="sha512")
    server = start_lazyreg(tmp_path / "data", database_url=url)
    try:
        task = server.setup_mirror(hostile, "app", "app")
        assert task["state"] == "completed", task
        config, layer = digest(CONFIG, "sha512"), digest(LAYER, "sha512")
        assert len(layer) == 135

        assert _get(server, "app/manifests/v1")[2] == manifest
        status, body, served = _get(server, f"app/blobs/{layer}")  # lazily, from upstream
        assert (status, served) == (200, layer)
        assert body == LAYER
        assert _get(server, f"app/blobs/{layer}", "HEAD")[0] == 200
        assert _get(server, f"app/blobs/{config}")[1] == CONFIG
        stored = {a["digest"]: a for a in server.artifacts()["results"]}
        assert stored[layer]["location"] == f"sha512/{layer[7:9]}/{layer[7:]}"
        assert (server.data_dir / "storage" / stored[layer]["location"]).read_bytes() == LAYER
        requests_before = len(hostile.requests)
        assert _get(server, f"app/blobs/{layer}")[1] == LAYER  # now from storage
        assert len(hostile.requests) == requests_before
        check = server.verify()
        assert check["ok"], check
    finally:
        server.stop()
