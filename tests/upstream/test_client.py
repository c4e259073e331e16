"""The upstream client against a small in-process registry fake (the e2e tests use the real one)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from lazyreg.upstream.auth import parse_www_authenticate
from lazyreg.upstream.client import RemoteConfig, UpstreamClient
from lazyreg.upstream.errors import (
    AuthError,
    InvalidResponse,
    NotFound,
    Stalled,
    TooLarge,
    TooManyRequests,
    Unavailable,
)
from lazyreg.upstream.stall import StallRule

Handler = Callable[[web.Request], Any]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[dict[str, Handler]], Any]]:
    servers: list[TestServer] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(routes: dict[str, Handler], **config: Any) -> UpstreamClient:
        app = web.Application()
        for path, handler in routes.items():
            app.router.add_route("*", path, handler)
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        session = aiohttp.ClientSession()
        sessions.append(session)
        return UpstreamClient(session, RemoteConfig(url=str(server.make_url("/")),
                                                    backoff=0.01, **config))
    yield start
    for s in sessions:
        await s.close()
    for srv in servers:
        await srv.close()


def test_parse_bearer_challenge() -> None:
    c = parse_www_authenticate(
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:library/alpine:pull"')
    assert c is not None and c.scheme == "bearer"
    assert c.params == {"realm": "https://auth.example/token", "service": "registry.example",
                        "scope": "repository:library/alpine:pull"}


async def test_bearer_flow_caches_token_per_scope_and_refreshes_on_401(serve: Any) -> None:
    issued: list[str] = []
    valid: set[str] = set()

    async def token(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if auth != "Basic " + base64.b64encode(b"u:p").decode():
            return web.Response(status=401)
        tok = f"tok{len(issued)}-{request.query['scope']}"
        issued.append(tok)
        valid.add(tok)
        return web.json_response({"token": tok, "expires_in": 300})

    async def manifest(request: web.Request) -> web.Response:
        if request.headers.get("Authorization", "").removeprefix("Bearer ") not in valid:
            realm = str(request.url.with_path("/token").with_query(None))
            return web.Response(status=401, headers={"WWW-Authenticate": (
                f'Bearer realm="{realm}",service="svc",scope="repository:a/b:pull"')})
        return web.Response(headers={"Docker-Content-Digest": "sha256:" + "0" * 64,
                                     "Content-Type": "application/json"})

    client = await serve({"/token": token, "/v2/a/b/manifests/{ref}": manifest},
                         username="u", password="p")
    await client.head_manifest("a/b", "v1")
    await client.head_manifest("a/b", "v2")
    assert len(issued) == 1  # cached for the scope
    valid.clear()  # the token expired on the server's side
    await client.head_manifest("a/b", "v3")
    assert len(issued) == 2


async def test_wrong_password_is_an_auth_error_saying_so(serve: Any) -> None:
    async def v2(request: web.Request) -> web.Response:
        return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="r"'})
    client = await serve({"/v2/": v2}, username="u", password="bad")
    with pytest.raises(AuthError, match="wrong username or password"):
        await client.ping()


async def test_retries_5xx_and_honours_retry_after(serve: Any) -> None:
    calls: list[float] = []

    async def tags(request: web.Request) -> web.Response:
        calls.append(time.monotonic())
        if len(calls) == 1:
            return web.Response(status=503)
        if len(calls) == 2:
            return web.Response(status=429, headers={"Retry-After": "1"})
        return web.json_response({"tags": ["a"]})

    client = await serve({"/v2/x/tags/list": tags})
    assert await client.list_tags("x") == ["a"]
    assert len(calls) == 3
    assert calls[2] - calls[1] >= 0.95  # waited as told


async def test_persistent_429_and_404(serve: Any) -> None:
    async def busy(request: web.Request) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": "0"})

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404)
    client = await serve({"/v2/x/tags/list": busy, "/v2/y/tags/list": missing}, retries=2)
    with pytest.raises(TooManyRequests):
        await client.list_tags("x")
    with pytest.raises(NotFound):
        await client.list_tags("y")


async def test_connection_refused_is_unavailable() -> None:
    async with aiohttp.ClientSession() as session:
        client = UpstreamClient(session, RemoteConfig(url="http://127.0.0.1:9", retries=1,
                                                      backoff=0.01))
        with pytest.raises(Unavailable):
            await client.ping()


async def test_tag_list_follows_link_pagination(serve: Any) -> None:
    async def tags(request: web.Request) -> web.Response:
        if request.query.get("last") == "b":
            return web.json_response({"tags": ["c"]})
        return web.json_response({"tags": ["a", "b"]}, headers={
            "Link": '</v2/x/tags/list?n=2&last=b>; rel="next"'})
    client = await serve({"/v2/x/tags/list": tags})
    assert await client.list_tags("x") == ["a", "b", "c"]


async def test_tag_list_link_loop_is_refused(serve: Any) -> None:
    calls: list[str] = []

    async def tags(request: web.Request) -> web.Response:
        calls.append(request.path_qs)
        return web.json_response({"tags": ["a"]}, headers={
            "Link": '</v2/x/tags/list?n=1000&last=a>; rel="next"'})
    client = await serve({"/v2/x/tags/list": tags})
    with pytest.raises(InvalidResponse, match="loops"):
        await client.list_tags("x")
    assert len(calls) == 2


@pytest.mark.parametrize("link", [
    '<http://evil.example/v2/x/tags/list?last=a>; rel="next"',
    '</v2/other/tags/list?last=a>; rel="next"',
    '</v2/x/manifests/latest>; rel="next"',
])
async def test_tag_list_link_elsewhere_is_refused(serve: Any, link: str) -> None:
    calls: list[str] = []

    async def tags(request: web.Request) -> web.Response:
        calls.append(request.path_qs)
        return web.json_response({"tags": ["a"]}, headers={"Link": link})

    async def elsewhere(request: web.Request) -> web.Response:
        calls.append(request.path_qs)
        return web.json_response({"tags": []})
    client = await serve({"/v2/x/tags/list": tags, "/v2/other/tags/list": elsewhere,
                          "/v2/x/manifests/latest": elsewhere})
    with pytest.raises(InvalidResponse, match="Link to another"):
        await client.list_tags("x")
    assert calls == ["/v2/x/tags/list?n=1000"]


async def test_tag_list_pages_are_capped(serve: Any) -> None:
    async def tags(request: web.Request) -> web.Response:
        last = int(request.query.get("last", "0"))
        return web.json_response({"tags": []}, headers={
            "Link": f'</v2/x/tags/list?last={last + 1}>; rel="next"'})
    client = await serve({"/v2/x/tags/list": tags})
    pages = 0
    with pytest.raises(InvalidResponse, match="more than 5 pages"):
        async for _ in client.iter_tag_pages("x", max_pages=5):
            pages += 1
    assert pages == 5


async def test_tag_list_over_max_tags_fails(serve: Any) -> None:
    async def tags(request: web.Request) -> web.Response:
        return web.json_response({"tags": [f"t{i}" for i in range(50)]})
    client = await serve({"/v2/x/tags/list": tags})
    with pytest.raises(InvalidResponse, match="more than 10 tags"):
        await client.list_tags("x", max_tags=10)


@pytest.mark.parametrize("reference", ["../x", "../../../../v2/evil/marker/manifests/x",
                                       "v1\n", "sha256:" + "a" * 64 + "\n"])
async def test_invalid_references_are_never_requested(serve: Any, reference: str) -> None:
    seen: list[str] = []

    async def anything(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.Response(status=404)
    client = await serve({"/{tail:.*}": anything})
    with pytest.raises(InvalidResponse, match="invalid tag or digest"):
        await client.get_manifest("a/b", reference)
    with pytest.raises(InvalidResponse, match="invalid tag or digest"):
        await client.head_manifest("a/b", reference)
    assert seen == []


async def test_manifest_sent_in_many_small_writes_is_read_whole(serve: Any) -> None:
    body = json.dumps({"schemaVersion": 2, "annotations": {"k": "v" * 300_000}}).encode()

    async def manifest(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json",
                                           "Content-Length": str(len(body))})
        await resp.prepare(request)
        for i in range(0, len(body), 1000):
            await resp.write(body[i:i + 1000])
            if i % 50_000 == 0:
                await asyncio.sleep(0.001)  # let the client read what is buffered
        return resp
    client = await serve({"/v2/a/manifests/{ref}": manifest})
    got = await client.get_manifest("a", "v1")
    assert got.data == body


async def test_manifest_over_the_limit_fails_naming_it(serve: Any) -> None:
    async def manifest(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()  # chunked: no length declared
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(200):
                await resp.write(b" " * 65536)
        return resp
    client = await serve({"/v2/a/manifests/{ref}": manifest})
    with pytest.raises(TooLarge, match="manifest a:big is more than the limit of 1048576"):
        await client.get_manifest("a", "big", max_size=1024 * 1024)


async def test_token_response_is_capped(serve: Any) -> None:
    async def token(request: web.Request) -> web.StreamResponse:
        return web.json_response({"token": "t" * 100_000})

    async def v2(request: web.Request) -> web.Response:
        realm = str(request.url.with_path("/token").with_query(None))
        return web.Response(status=401, headers={
            "WWW-Authenticate": f'Bearer realm="{realm}",service="s"'})
    client = await serve({"/token": token, "/v2/": v2})
    with pytest.raises(TooLarge, match="token response"):
        await client.ping()


async def test_a_drip_fed_blob_stalls_and_frees_its_slot(serve: Any) -> None:
    async def blob(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": "1000"})
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(1000):
                await resp.write(b"x")
                await asyncio.sleep(0.05)
        return resp
    client = await serve({"/v2/a/blobs/{digest}": blob}, concurrency=1,
                         stall=StallRule(min_rate=1024, timeout=0.5))
    digest = "sha256:" + "a" * 64
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(Stalled):
        async with client.open_blob("a", digest) as resp:
            assert resp.status == 200
            while await resp.content.read(65536):
                pass
    assert loop.time() - started < 2.0
    assert not client.semaphore.locked()  # the remote's one slot is free again


async def test_referrers_api_absent_is_none(serve: Any) -> None:
    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404)
    client = await serve({"/v2/a/referrers/{digest}": missing})
    assert await client.get_referrers("a", "sha256:" + "b" * 64) is None
