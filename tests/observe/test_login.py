"""The HTML pages' login (issue 20, finding 1): a form with a CSRF token and a SameSite
session cookie, never a Basic challenge; the cookie opens the pages and not the API."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from lazyreg.app import create_app
from lazyreg.config import Settings
from lazyreg.observe.login import LOGIN_NONCE, SESSION

Client = TestClient[Any, Any]
PASSWORD = "admin-secret-1"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    settings = Settings(data_dir=tmp_path, auth="on", admin_password=PASSWORD)
    async with TestClient(TestServer(create_app(settings))) as test_client:
        yield test_client


async def login_form(client: Client) -> str:
    resp = await client.get("/login")
    assert resp.status == 200 and "WWW-Authenticate" not in resp.headers
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    cookie = resp.cookies[LOGIN_NONCE]
    assert cookie["samesite"] == "Strict" and cookie["httponly"]
    found = re.search(r'name="csrf" value="([^"]+)"', await resp.text())
    assert found
    return found.group(1)


async def log_in(client: Client, csrf: str, password: str = PASSWORD,
                 headers: dict[str, str] | None = None) -> Any:
    return await client.post("/login", data={"csrf": csrf, "username": "admin",
                                             "password": password},
                             headers={**FORM, **(headers or {})}, allow_redirects=False)


async def test_a_login_by_form_gives_a_strict_session_that_opens_the_page_only(
        client: Client) -> None:
    resp = await client.get("/", allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (303, "/login")
    csrf = await login_form(client)

    resp = await log_in(client, csrf, "wrong")
    assert resp.status == 401 and "wrong username or password" in await resp.text()
    assert "WWW-Authenticate" not in resp.headers
    csrf = await login_form(client)
    resp = await log_in(client, csrf)
    assert (resp.status, resp.headers["Location"]) == (303, "/")
    session = resp.cookies[SESSION]
    assert session["samesite"] == "Strict" and session["httponly"] and session["path"] == "/"

    page = await client.get("/")
    assert page.status == 200 and "lazyreg status" in await page.text()
    # The session opens the HTML pages, not the API: a browser never writes with it.
    resp = await client.get("/api/v1/remotes/")
    assert resp.status == 401
    resp = await client.post("/api/v1/repositories/", json={"name": "x"})
    assert resp.status == 401

    found = re.search(r'action="/logout".*?name="csrf" value="([^"]+)"', await page.text())
    assert found
    resp = await client.post("/logout", data={"csrf": "forged"}, headers=FORM,
                             allow_redirects=False)
    assert resp.status == 403
    resp = await client.post("/logout", data={"csrf": found.group(1)}, headers=FORM,
                             allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (303, "/login")
    assert (await client.get("/", allow_redirects=False)).status == 303
    # The session's token was revoked, not only its cookie dropped.
    client.session.cookie_jar.clear()
    resp = await client.get("/", headers={"Cookie": f"{SESSION}={session.value}"},
                            allow_redirects=False)
    assert resp.status == 303


async def test_a_login_form_from_elsewhere_or_without_its_token_is_refused(
        client: Client) -> None:
    csrf = await login_form(client)
    for headers, data in (({"Origin": "http://evil.example"}, None),
                          ({"Sec-Fetch-Site": "cross-site"}, None),
                          ({}, {"csrf": "", "username": "admin", "password": PASSWORD}),
                          ({}, {"username": "admin", "password": PASSWORD})):
        if data is None:
            resp = await log_in(client, csrf, headers=headers)
        else:
            resp = await client.post("/login", data=data, headers=FORM,
                                     allow_redirects=False)
        assert resp.status == 403, headers
        assert SESSION not in resp.cookies
    # Another visitor's token (bound to another nonce cookie) does not fit this one.
    client.session.cookie_jar.clear()
    await login_form(client)
    resp = await log_in(client, csrf)
    assert resp.status == 403
