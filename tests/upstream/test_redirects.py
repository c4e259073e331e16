"""Where an upstream may send the client: schemes, metadata addresses, credentials."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from lazyreg.upstream.client import RemoteConfig, UpstreamClient
from lazyreg.upstream.errors import AuthError, InvalidResponse, RedirectRefused
from lazyreg.upstream.redirects import destination, is_forbidden_address

BASIC = "Basic " + base64.b64encode(b"u:p").decode()


@pytest.mark.parametrize("address", ["169.254.169.254", "169.254.0.1", "fd00:ec2::254",
                                     "fe80::1", "::ffff:169.254.169.254"])
def test_metadata_and_link_local_addresses_are_forbidden(address: str) -> None:
    assert is_forbidden_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.1.1", "8.8.8.8",
                                     "fd00:ec2::253", "::1"])
def test_private_and_public_addresses_are_not(address: str) -> None:
    assert not is_forbidden_address(ipaddress.ip_address(address))


async def test_destination_rules() -> None:
    with pytest.raises(RedirectRefused, match=r"169\.254\.169\.254"):
        await destination(URL("http://169.254.169.254/latest/"), allow_private=False, pin=True)
    with pytest.raises(RedirectRefused, match=r"fd00:ec2::254"):
        await destination(URL("http://[fd00:ec2::254]/"), allow_private=False, pin=True)
    for url in ("file:///etc/passwd", "ftp://host/x", "gopher://host/"):
        with pytest.raises(RedirectRefused, match="only http and https"):
            await destination(URL(url), allow_private=True, pin=True)
    allowed = await destination(URL("http://169.254.169.254/x"), allow_private=True, pin=True)
    assert allowed.url == URL("http://169.254.169.254/x")
    # A name is checked as it resolves, and the request pinned to the address checked.
    pinned = await destination(URL("https://localhost:8443/v2/"), allow_private=False, pin=True)
    assert pinned.url.host in ("127.0.0.1", "::1")
    assert pinned.host_header == "localhost:8443" and pinned.server_hostname == "localhost"


@pytest.fixture
async def servers() -> AsyncIterator[Any]:
    started: list[TestServer] = []

    async def start(routes: dict[str, Any]) -> TestServer:
        app = web.Application()
        for path, handler in routes.items():
            app.router.add_route("*", path, handler)
        server = TestServer(app)
        await server.start_server()
        started.append(server)
        return server
    yield start
    for server in started:
        await server.close()


async def test_credentials_do_not_follow_a_redirect_to_another_origin(servers: Any) -> None:
    seen: list[str | None] = []

    async def storage(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.Response(body=b"layer")
    other = await servers({"/blob": storage})

    async def blob(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != BASIC:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        raise web.HTTPTemporaryRedirect(str(other.make_url("/blob")))
    origin = await servers({"/v2/a/blobs/{digest}": blob, "/blob": storage})
    async with aiohttp.ClientSession() as session:
        client = UpstreamClient(session, RemoteConfig(url=str(origin.make_url("/")),
                                                      username="u", password="p"))
        assert await client.get_blob_bytes("a", "sha256:" + "0" * 64) == b"layer"
    assert seen == [None]


async def test_redirect_loops_end(servers: Any) -> None:
    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/v2/")
    server = await servers({"/v2/": loop})
    async with aiohttp.ClientSession() as session:
        client = UpstreamClient(session, RemoteConfig(url=str(server.make_url("/"))))
        with pytest.raises(InvalidResponse, match="redirects"):
            await client.ping()


async def test_basic_credentials_never_go_to_another_host_over_http(servers: Any) -> None:
    asked: list[str | None] = []

    async def token(request: web.Request) -> web.Response:
        asked.append(request.headers.get("Authorization"))
        return web.json_response({"token": "t"})
    realm_server = await servers({"/token": token})
    # Another host on plain HTTP (the same host on another port would be fine).
    realm = str(realm_server.make_url("/token")).replace("127.0.0.1", "localhost")

    async def v2(request: web.Request) -> web.Response:
        return web.Response(status=401, headers={
            "WWW-Authenticate": f'Bearer realm="{realm}",service="s"'})
    registry = await servers({"/v2/": v2})
    async with aiohttp.ClientSession() as session:
        client = UpstreamClient(session, RemoteConfig(url=str(registry.make_url("/")),
                                                      username="u", password="p"))
        with pytest.raises(AuthError, match="plain HTTP"):
            await client.ping()
        assert asked == []
        # Without credentials there is nothing to protect: the anonymous token flow works.
        anonymous = UpstreamClient(session, RemoteConfig(url=str(registry.make_url("/"))))
        with pytest.raises(AuthError):
            await anonymous.ping()  # the fake /v2/ refuses every token
        assert asked and set(asked) == {None}
