"""The upstream client against a small in-process registry fake (the e2e tests use the real one)."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from lazyreg.upstream.auth import parse_www_authenticate
from lazyreg.upstream.client import RemoteConfig, UpstreamClient
from lazyreg.upstream.errors import AuthError, NotFound, TooManyRequests, Unavailable

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
