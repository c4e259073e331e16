"""SSRF: an upstream's redirect to a metadata address or another scheme is refused.

A tiny upstream serves a manifest whose layers redirect to
`http://169.254.169.254/…` and to `file:///etc/passwd`. A lazy pull through
/v2 gets a registry error naming the refusal, and nothing from the redirect
target; an immediate sync skips the tag, saying why, and keeps the clean one.
Ordinary redirects still work.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from lazyreg.app import create_app
from lazyreg.config import Settings
from tests.api.conftest import API, Client

OCI = "application/vnd.oci.image.manifest.v1+json"
CONFIG = b'{"os":"linux","architecture":"amd64"}'
LAYERS = {"metadata": b"m" * 100, "file": b"f" * 200, "fine": b"ok" * 150}


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def redirecting_upstream(metadata_hits: list[str]) -> web.Application:
    layers = {digest(d): (name, d) for name, d in LAYERS.items()}
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(CONFIG), "size": len(CONFIG)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": d, "size": len(data)} for d, (_, data) in layers.items()],
    }).encode()
    fine = digest(LAYERS["fine"])
    clean = json.dumps({
        "schemaVersion": 2, "mediaType": OCI,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(CONFIG), "size": len(CONFIG)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": fine, "size": len(LAYERS["fine"])}],
    }).encode()

    async def root(request: web.Request) -> web.Response:
        return web.json_response({})

    async def tags(request: web.Request) -> web.Response:
        return web.json_response({"name": "evil", "tags": ["v1", "clean"]})

    async def get_manifest(request: web.Request) -> web.Response:
        ref = request.match_info["ref"]
        body = clean if ref in ("clean", digest(clean)) else manifest
        return web.Response(body=body, headers={"Content-Type": OCI,
                                                "Docker-Content-Digest": digest(body)})

    async def blob(request: web.Request) -> web.StreamResponse:
        wanted = request.match_info["digest"]
        if wanted == digest(CONFIG):
            return web.Response(body=CONFIG)
        name = layers[wanted][0]
        if name == "metadata":
            raise web.HTTPTemporaryRedirect("http://169.254.169.254/latest/meta-data/iam/")
        if name == "file":
            raise web.HTTPFound("file:///etc/passwd")
        raise web.HTTPTemporaryRedirect(f"/storage/{wanted}")

    async def storage(request: web.Request) -> web.Response:
        metadata_hits.append(request.path)
        return web.Response(body=layers[request.match_info["digest"]][1])

    app = web.Application()
    app.router.add_get("/v2/", root)
    app.router.add_get("/v2/evil/tags/list", tags)
    app.router.add_route("*", "/v2/evil/manifests/{ref}", get_manifest)
    app.router.add_get("/v2/evil/blobs/{digest}", blob)
    app.router.add_get("/storage/{digest}", storage)
    return app


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[Client, str, list[str]]]:
    hits: list[str] = []
    upstream = TestServer(redirecting_upstream(hits))
    await upstream.start_server()
    app = create_app(Settings(data_dir=tmp_path, upstream_retries=0, upstream_backoff=0))
    async with TestClient(TestServer(app)) as client:
        yield client, str(upstream.make_url("")).rstrip("/"), hits
    await upstream.close()


async def ok(client: Client, method: str, path: str, body: Any = None) -> Any:
    resp = await client.request(method, f"{API}/{path}", json=body)
    assert resp.status < 300, await resp.text()
    return await resp.json()


async def sync(client: Client, name: str, url: str, policy: str) -> dict[str, Any]:
    await ok(client, "POST", "remotes/", {"name": name, "url": url, "upstream_name": "evil",
                                          "policy": policy})
    await ok(client, "POST", "repositories/", {"name": name})
    await ok(client, "POST", "distributions/", {"name": name, "base_path": name,
                                                "repository": name})
    task = await ok(client, "POST", f"repositories/{name}/sync/", {"remote": name})
    while task["state"] not in ("completed", "failed"):
        task = await ok(client, "GET", f"tasks/{task['id']}/")
    return dict(task)


async def test_lazy_pull_refuses_metadata_and_file_redirects(
        setup: tuple[Client, str, list[str]]) -> None:
    client, url, hits = setup
    assert (await sync(client, "lazy", url, "on_demand"))["state"] == "completed"
    for name, target in (("metadata", "169.254.169.254"), ("file", "file:")):
        resp = await client.get(f"/v2/lazy/blobs/{digest(LAYERS[name])}")
        body = await resp.read()
        assert resp.status == 502, body
        error = json.loads(body)["errors"][0]
        assert error["code"] == "UNAVAILABLE"
        assert "refused" in error["message"] and target in error["message"]
        assert LAYERS[name][:50] not in body
    # An ordinary redirect (here to the upstream's own storage path) is still followed.
    resp = await client.get(f"/v2/lazy/blobs/{digest(LAYERS['fine'])}")
    assert resp.status == 200 and await resp.read() == LAYERS["fine"]
    assert len(hits) == 1


async def test_immediate_sync_skips_the_tag_whose_layer_redirect_was_refused(
        setup: tuple[Client, str, list[str]]) -> None:
    """Issue 20: a refused redirect skips its tag with a warning, not the whole sync."""
    client, url, _ = setup
    task = await sync(client, "eager", url, "immediate")
    assert task["state"] == "completed", task
    [warning] = task["warnings"]
    assert "'v1'" in warning and "refused" in warning, warning
    tags = await ok(client, "GET", "content/tags/?repository=eager")
    assert [t["name"] for t in tags["results"]] == ["clean"]
    resp = await client.get(f"/v2/eager/blobs/{digest(LAYERS['fine'])}")
    assert resp.status == 200 and await resp.read() == LAYERS["fine"]
