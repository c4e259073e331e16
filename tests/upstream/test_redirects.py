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
from lazyreg.upstream.redirects import (
    address_class,
    destination,
    is_forbidden_address,
    own_classes,
)

BASIC = "Basic " + base64.b64encode(b"u:p").decode()


@pytest.mark.parametrize("address", ["169.254.169.254", "169.254.0.1", "fd00:ec2::254",
                                     "fe80::1", "::ffff:169.254.169.254"])
def test_metadata_and_link_local_addresses_are_forbidden(address: str) -> None:
    assert is_forbidden_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.1.1", "8.8.8.8",
                                     "fd00:ec2::253", "::1"])
def test_private_and_public_addresses_are_not(address: str) -> None:
    assert not is_forbidden_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("127.3.2.1", "loopback"), ("::1", "loopback"),
    ("0.0.0.0", "unspecified"), ("0.1.2.3", "unspecified"), ("::", "unspecified"),
    ("10.0.0.1", "private"), ("172.16.0.1", "private"), ("172.31.255.255", "private"),
    ("192.168.0.1", "private"), ("100.64.0.1", "private"), ("100.127.255.254", "private"),
    ("fc00::1", "private"), ("fd12:3456::1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("fd00:ec2::254", "link-local"),
    # IPv4 carried in IPv6: mapped, compatible (::/96) and NAT64 (64:ff9b::/96).
    ("::ffff:127.0.0.1", "loopback"), ("::127.0.0.1", "loopback"),
    ("64:ff9b::7f00:1", "loopback"), ("64:ff9b::10.0.0.1", "private"),
    ("::ffff:0.0.0.0", "unspecified"), ("64:ff9b::a9fe:a9fe", "link-local"),
    ("8.8.8.8", None), ("172.32.0.1", None), ("100.128.0.1", None), ("203.0.113.5", None),
    ("2001:db8::1", None), ("64:ff9b::808:808", None),
])
def test_address_classes(address: str, kind: str | None) -> None:
    assert address_class(ipaddress.ip_address(address)) == kind


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:5000/internal/admin", "http://localhost:5000/x",
    "http://2130706433:5000/x", "http://0x7f000001/x", "http://127.1/x",
    "http://0.0.0.0:5000/x", "http://0/x", "http://10.0.0.1/x", "http://[::1]/x",
    "http://[::ffff:7f00:1]/x", "http://[64:ff9b::7f00:1]/x", "http://[::127.0.0.1]/x",
    "http://100.64.1.1/x", "http://[fc00::1]/x",
])
async def test_a_public_remote_is_never_sent_to_a_private_address(url: str) -> None:
    with pytest.raises(RedirectRefused, match="refused a redirect"):
        await destination(URL(url), allow_private=False, pin=True, own=frozenset())


async def test_the_remotes_own_class_is_allowed_and_no_other() -> None:
    own = await own_classes(URL("http://127.0.0.1:5000/"))
    assert own == {"loopback"}
    for url in ("http://localhost:6000/x", "http://2130706433:6000/x", "http://127.0.0.2/x"):
        allowed = await destination(URL(url), allow_private=False, pin=True, own=own)
        assert allowed.url.host == "127.0.0.1" or allowed.url.host == "127.0.0.2"
    for url in ("http://0.0.0.0:6000/x", "http://10.0.0.1/x", "http://169.254.169.254/x"):
        with pytest.raises(RedirectRefused):
            await destination(URL(url), allow_private=False, pin=True, own=own)
    private = await own_classes(URL("https://10.1.2.3/"))
    await destination(URL("http://192.168.0.9/"), allow_private=False, pin=True, own=private)
    with pytest.raises(RedirectRefused, match="loopback"):
        await destination(URL("http://localhost/"), allow_private=False, pin=True, own=private)
    assert await own_classes(URL("https://203.0.113.5/")) == frozenset()
    # allow_private_redirects opens every class.
    for url in ("http://0.0.0.0/x", "http://localhost/x", "http://169.254.169.254/x"):
        await destination(URL(url), allow_private=True, pin=True)


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
    pinned = await destination(URL("https://localhost:8443/v2/"), allow_private=False, pin=True,
                               own=frozenset({"loopback"}))
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
