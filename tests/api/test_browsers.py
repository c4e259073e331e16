"""Issue 20, finding 1: a page on another origin cannot write through a visitor's browser,
auth on or off; and finding 7's `nosniff` on every API answer.

What such a page can send without a CORS preflight: a form (text/plain,
form-encoded, multipart) or a no-cors `fetch()`, with the browser's `Origin` and
`Sec-Fetch-Site`, and with auth off under a DNS-rebinding `Host`.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from lazyreg.app import create_app
from lazyreg.config import Settings
from tests.api.conftest import API, Client
from tests.sqlite import seeded

ADMIN_PASSWORD = "admin-secret-1"
ADMIN = {"Authorization": "Basic " + base64.b64encode(
    f"admin:{ADMIN_PASSWORD}".encode()).decode()}
EVE = '{"username": "eve", "password": "eve-password-1", "role": "admin"}'


async def server(tmp_path: Path, template: Path, **settings: Any) -> TestClient[Any, Any]:
    app = create_app(Settings(data_dir=seeded(tmp_path, template), upstream_retries=0,
                              **settings))
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def secure(tmp_path: Path, template: Path) -> AsyncIterator[Client]:
    client = await server(tmp_path, template, auth="on", admin_password=ADMIN_PASSWORD)
    yield client
    await client.close()


@pytest.fixture
async def open_(tmp_path: Path, template: Path) -> AsyncIterator[Client]:
    client = await server(tmp_path, template, external_url="https://registry.example.com")
    yield client
    await client.close()


def origin(client: Client) -> str:
    return str(client.make_url("/")).rstrip("/")


async def users(client: Client) -> list[str]:
    resp = await client.get(f"{API}/users/", headers=ADMIN)
    assert resp.status == 200
    return [u["username"] for u in (await resp.json())["results"]]


async def test_auth_on_a_text_plain_post_no_longer_creates_an_admin(secure: Client) -> None:
    # What a form with enctype="text/plain" sends, with the Basic credentials a browser
    # kept: this answered 201 before.
    for content_type in ("text/plain", "application/x-www-form-urlencoded",
                         "multipart/form-data; boundary=x", None):
        headers = {**ADMIN, **({"Content-Type": content_type} if content_type else {})}
        resp = await secure.post(f"{API}/users/", data=EVE.encode(), headers=headers)
        assert resp.status == 415, content_type
        answer = await resp.json()
        assert answer["field"] == "Content-Type" and "application/json" in answer["detail"]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert await users(secure) == ["admin"]


@pytest.mark.parametrize("headers", [
    pytest.param({"Origin": "http://evil.example"}, id="foreign-origin"),
    pytest.param({"Origin": "null"}, id="null-origin"),
    pytest.param({"Sec-Fetch-Site": "cross-site"}, id="cross-site"),
    pytest.param({"Sec-Fetch-Site": "same-site"}, id="same-site"),
])
async def test_auth_on_a_write_from_another_origin_is_403(secure: Client,
                                                          headers: dict[str, str]) -> None:
    resp = await secure.post(f"{API}/users/", data=EVE.encode(),
                             headers={**ADMIN, **headers, "Content-Type": "application/json"})
    assert resp.status == 403
    assert "another origin" in (await resp.json())["detail"]
    resp = await secure.delete(f"{API}/users/admin/", headers={**ADMIN, **headers})
    assert resp.status == 403
    assert await users(secure) == ["admin"]


async def test_auth_on_writes_from_its_own_origin_and_from_non_browsers_work(
        secure: Client) -> None:
    for headers in ({"Origin": origin(secure), "Sec-Fetch-Site": "same-origin"}, {}):
        resp = await secure.post(f"{API}/repositories/", json={"name": f"r{len(headers)}"},
                                 headers={**ADMIN, **headers})
        assert resp.status == 201, await resp.text()
    # A write without a body needs no type (aiohttp's client names octet-stream).
    resp = await secure.post(f"{API}/tokens/", headers=ADMIN)
    assert resp.status == 201
    # Reads are not writes: a page elsewhere cannot read the answer anyway (no CORS).
    resp = await secure.get(f"{API}/repositories/", headers={**ADMIN, "Origin": "http://x"})
    assert resp.status == 200 and resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_auth_off_any_page_can_no_longer_write(open_: Client) -> None:
    resp = await open_.post(f"{API}/repositories/", data=b'{"name": "r"}',
                            headers={"Content-Type": "text/plain"})
    assert resp.status == 415
    resp = await open_.post(f"{API}/repositories/", json={"name": "r"},
                            headers={"Origin": "http://evil.example"})
    assert resp.status == 403
    resp = await open_.post(f"{API}/repositories/", json={"name": "r"},
                            headers={"Sec-Fetch-Site": "cross-site"})
    assert resp.status == 403
    resp = await open_.get(f"{API}/repositories/")
    assert (await resp.json())["count"] == 0
    resp = await open_.post(f"{API}/repositories/", json={"name": "r"},
                            headers={"Origin": origin(open_)})
    assert resp.status == 201


@pytest.mark.parametrize("path", ["/api/v1/repositories/", "/v2/", "/", "/metrics"])
async def test_auth_off_a_rebound_host_is_refused(open_: Client, path: str) -> None:
    port = open_.port
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.nip.io:{port}",
                 f"0.0.0.0:{port}", f"10.0.0.1:{port}"):
        resp = await open_.get(path, headers={"Host": host})
        assert resp.status == 403, host
        assert "not this server's" in await resp.text()
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}",
                 f"app.localhost:{port}", "registry.example.com"):
        resp = await open_.get(path, headers={"Host": host}, allow_redirects=False)
        assert resp.status == 200, (host, await resp.text())
    # A rebinding page's write is refused before anything is read.
    resp = await open_.post(f"{API}/repositories/", json={"name": "r"},
                            headers={"Host": f"evil.example:{port}"})
    assert resp.status == 403


async def test_auth_on_any_host_is_answered(secure: Client) -> None:
    # With auth on, credentials are per origin: a rebinding page has none.
    resp = await secure.get(f"{API}/repositories/", headers={**ADMIN, "Host": "reg.example"})
    assert resp.status == 200
