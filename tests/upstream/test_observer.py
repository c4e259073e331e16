"""The client tells its observer of every request (retries and tokens too) and of blob bytes."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from lazyreg.upstream.client import RemoteConfig, UpstreamClient
from lazyreg.upstream.errors import NotFound, Unavailable, upstream_status
from lazyreg.upstream.observer import request_kind
from tests.rig import free_port

BLOB = os.urandom(300_000)
DIGEST = "sha256:" + "0" * 64


class Recorder:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, int | None]] = []
        self.blob_bytes: list[int] = []

    def upstream_request(self, kind: str, method: str, status: int | None) -> None:
        self.requests.append((kind, method, status))

    def upstream_blob_bytes(self, nbytes: int) -> None:
        self.blob_bytes.append(nbytes)


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[UpstreamClient, Recorder]]:
    """Bearer auth, a blob that fails once with 503, a manifest that is not there."""
    failures = {"left": 1}

    async def token(request: web.Request) -> web.Response:
        return web.json_response({"token": "t", "expires_in": 300})

    async def blob(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != "Bearer t":
            realm = str(request.url.with_path("/token").with_query(None))
            return web.Response(status=401, headers={
                "WWW-Authenticate": f'Bearer realm="{realm}",service="s"'})
        if failures["left"]:
            failures["left"] -= 1
            return web.Response(status=503)
        return web.Response(body=BLOB)

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/token", token)
    app.router.add_get("/v2/{name:.+}/blobs/{digest}", blob)
    app.router.add_route("*", "/v2/{name:.+}/manifests/{ref}", missing)
    server = TestServer(app)
    await server.start_server()
    recorder = Recorder()
    async with aiohttp.ClientSession() as session:
        yield UpstreamClient(session, RemoteConfig(url=str(server.make_url("/")), backoff=0.01),
                             observer=recorder), recorder
    await server.close()


async def test_every_request_is_reported_with_its_kind_and_status(
        upstream: tuple[UpstreamClient, Recorder]) -> None:
    client, seen = upstream
    assert await client.get_blob_bytes("team/app", DIGEST) == BLOB
    assert seen.requests == [("blob", "GET", 401), ("token", "GET", 200),
                             ("blob", "GET", 503), ("blob", "GET", 200)]
    assert seen.blob_bytes == [len(BLOB)]
    seen.requests.clear()
    with pytest.raises(NotFound) as caught:
        await client.head_manifest("team/app", "v1")
    assert seen.requests == [("manifest", "HEAD", 404)]
    assert upstream_status(caught.value) == 404


async def test_a_blob_read_in_part_counts_what_arrived(
        upstream: tuple[UpstreamClient, Recorder]) -> None:
    client, seen = upstream
    async with client.open_blob("team/app", DIGEST) as resp:
        assert len(await resp.content.read(1000)) > 0
    assert len(seen.blob_bytes) == 1
    assert 0 < seen.blob_bytes[0] <= len(BLOB)


async def test_no_answer_is_reported_as_none() -> None:
    seen = Recorder()
    async with aiohttp.ClientSession() as session:
        client = UpstreamClient(session, RemoteConfig(url=f"http://127.0.0.1:{free_port()}",
                                                      retries=2, backoff=0.01),
                                observer=seen)
        with pytest.raises(Unavailable) as caught:
            await client.ping()
    assert seen.requests == [("ping", "GET", None)] * 3
    assert upstream_status(caught.value) is None


@pytest.mark.parametrize(("path", "kind"), [
    ("/v2/", "ping"), ("/v2/a/b/blobs/sha256:00", "blob"),
    ("/v2/a/blobs/b/manifests/v1", "manifest"), ("/v2/x/tags/list?n=10", "tags"),
    ("http://h/v2/x/referrers/sha256:1?artifactType=x", "referrers"),
    ("/v2/_catalog?n=2", "catalog"), ("/something/else", "other")])
def test_request_kinds_come_from_the_end_of_the_path(path: str, kind: str) -> None:
    assert request_kind(path) == kind
