"""Tokens end when they should (issue 20, finding 3), and POST /token's OAuth2 form
(finding 8), in process with --auth on.

Before: a token outlived a password change, opened a re-created user of the same
name, and minted itself a longer life; nothing listed or revoked tokens.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient, TestServer

from lazyreg.app import create_app
from lazyreg.auth.accounts import MAX_TOKENS_PER_ACCOUNT
from lazyreg.config import Settings
from lazyreg.state import STATE
from tests.api.conftest import API, Client
from tests.api.test_access import ADMIN, ADMIN_PASSWORD, basic, bearer, call, make_user
from tests.sqlite import seeded

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
async def secure(tmp_path: Path, template: Path) -> AsyncIterator[Client]:
    settings = Settings(data_dir=seeded(tmp_path, template), auth="on",
                        admin_password=ADMIN_PASSWORD, upstream_retries=0, upstream_backoff=0)
    async with TestClient(TestServer(create_app(settings))) as client:
        yield client


async def mint(client: Client, headers: dict[str, str], expires_in: int | None = None
               ) -> dict[str, Any]:
    body = {"expires_in": expires_in} if expires_in else {}
    answer: dict[str, Any] = await call(client, "POST", f"{API}/tokens/", 201, headers, body)
    return answer


async def works(client: Client, token: str) -> bool:
    resp = await client.get(f"{API}/status/", headers=bearer(token))
    assert resp.status in (200, 401)
    return resp.status == 200


async def test_a_password_change_ends_every_earlier_token(secure: Client) -> None:
    vera = await make_user(secure, "vera")
    old = (await mint(secure, vera))["token"]
    registry = (await call(secure, "GET", "/token?service=lazyreg", 200, vera))["token"]
    assert await works(secure, old)
    await call(secure, "PATCH", f"{API}/users/vera/", 200, ADMIN,
               {"password": "a-new-password"})
    assert not await works(secure, old)
    resp = await secure.get("/v2/", headers=bearer(registry))
    assert resp.status == 401
    assert "password or role changed" in (await resp.json())["errors"][0]["message"]
    new = (await mint(secure, basic("vera", "a-new-password")))["token"]
    assert await works(secure, new)


async def test_a_role_change_ends_every_earlier_token(secure: Client) -> None:
    bob = await make_user(secure, "bob", role="admin")
    old = (await mint(secure, bob))["token"]
    await call(secure, "PATCH", f"{API}/users/bob/", 200, ADMIN, {"role": "viewer"})
    assert not await works(secure, old)


async def test_a_re_created_user_does_not_accept_the_old_users_token(secure: Client) -> None:
    vera = await make_user(secure, "vera")
    old = (await mint(secure, vera))["token"]
    assert await works(secure, old)  # and now its account is cached
    await call(secure, "DELETE", f"{API}/users/vera/", 204, ADMIN)
    await make_user(secure, "vera")
    assert not await works(secure, old)


async def test_a_token_minted_with_a_token_never_outlives_it(secure: Client) -> None:
    vera = await make_user(secure, "vera")
    short = await mint(secure, vera, expires_in=60)
    child = await mint(secure, bearer(short["token"]), expires_in=30 * 86400)
    parent_exp = jwt.decode(short["token"], options={"verify_signature": False})["exp"]
    child_exp = jwt.decode(child["token"], options={"verify_signature": False})["exp"]
    assert child_exp <= parent_exp <= time.time() + 65
    assert child["expires"] == short["expires"]
    grandchild = await mint(secure, bearer(child["token"]))
    listed = await call(secure, "GET", f"{API}/tokens/", 200, vera)
    by_id = {t["id"]: t for t in listed["results"]}
    assert by_id[child["id"]]["parent"] == short["id"]
    assert by_id[grandchild["id"]]["parent"] == child["id"]
    # Revoking the parent revokes what was minted with it.
    await call(secure, "DELETE", f"{API}/tokens/{short['id']}/", 204, vera)
    for token in (short, child, grandchild):
        assert not await works(secure, token["token"])
    assert (await call(secure, "GET", f"{API}/tokens/", 200, vera))["count"] == 0


async def test_tokens_are_listed_and_revoked_by_their_owner_or_an_admin(secure: Client
                                                                      ) -> None:
    vera, bob = await make_user(secure, "vera"), await make_user(secure, "bob")
    v1, v2 = await mint(secure, vera), await mint(secure, vera)
    b1 = await mint(secure, bob)
    mine = await call(secure, "GET", f"{API}/tokens/", 200, bearer(v1["token"]))
    assert {t["id"] for t in mine["results"]} == {v1["id"], v2["id"]}
    assert {t["username"] for t in mine["results"]} == {"vera"}
    assert "token" not in str(mine["results"][0].keys())
    everyone = await call(secure, "GET", f"{API}/tokens/", 200, ADMIN)
    assert {v1["id"], v2["id"], b1["id"]} <= {t["id"] for t in everyone["results"]}
    only_bob = await call(secure, "GET", f"{API}/tokens/?user=bob", 200, ADMIN)
    assert [t["id"] for t in only_bob["results"]] == [b1["id"]]
    await call(secure, "GET", f"{API}/tokens/?user=bob", 404, vera)
    # A viewer cannot revoke another's token: to them it does not exist.
    await call(secure, "DELETE", f"{API}/tokens/{b1['id']}/", 404, vera)
    assert await works(secure, b1["token"])
    # Revoked: refused at once, the other token of the same user still works.
    await call(secure, "DELETE", f"{API}/tokens/{v1['id']}/", 204, bearer(v2["token"]))
    assert not await works(secure, v1["token"])
    assert await works(secure, v2["token"])
    await call(secure, "DELETE", f"{API}/tokens/{b1['id']}/", 204, ADMIN)
    assert not await works(secure, b1["token"])
    await call(secure, "DELETE", f"{API}/tokens/{b1['id']}/", 404, ADMIN)
    await call(secure, "DELETE", f"{API}/tokens/{'x' * 5000}/", 404, ADMIN)


async def test_checking_a_token_reads_the_database_once_per_account(secure: Client) -> None:
    vera = await make_user(secure, "vera")
    token = (await mint(secure, vera))["token"]
    auth = secure.app[STATE].auth
    db = auth.accounts.db
    reads = 0

    class Counting:
        async def read(self, fn: Any) -> Any:
            nonlocal reads
            reads += 1
            return await db.read(fn)
    auth.accounts.db = Counting()  # type: ignore[assignment]
    for _ in range(20):
        assert await works(secure, token)
    assert reads == 1
    auth.invalidate_account()  # what the cross-node invalidation calls
    assert await works(secure, token)
    assert reads == 2
    # Requests that miss together share the read (on a busy CPU some may not meet).
    auth.invalidate_account()
    assert all(await asyncio.gather(*(works(secure, token) for _ in range(20))))
    assert reads < 2 + 20


async def test_post_token_password_and_refresh_grants(secure: Client) -> None:
    await make_user(secure, "vera")
    form = {"grant_type": "password", "username": "vera", "password": "vera-password",
            "service": "lazyreg", "client_id": "containerd-client", "access_type": "offline",
            "scope": "repository:team/app:pull"}
    resp = await secure.post("/token", data=form, headers=FORM)
    answer = await resp.json()
    assert resp.status == 200, answer
    assert {"access_token", "expires_in", "issued_at", "scope", "refresh_token"} <= set(answer)
    assert (await secure.get("/v2/", headers=bearer(answer["access_token"]))).status == 200
    refreshed = await secure.post("/token", headers=FORM, data={
        "grant_type": "refresh_token", "refresh_token": answer["refresh_token"],
        "service": "lazyreg", "scope": "repository:team/app:pull"})
    assert refreshed.status == 200, await refreshed.text()
    assert "refresh_token" not in await refreshed.json()
    # Without access_type=offline: no refresh token.
    plain = await (await secure.post("/token", headers=FORM,
                                     data={**form, "access_type": ""})).json()
    assert "refresh_token" not in plain
    # The refresh token is the user's, listed and revocable.
    listed = await call(secure, "GET", f"{API}/tokens/?user=vera", 200, ADMIN)
    [refresh] = [t for t in listed["results"] if t["kind"] == "refresh"]
    await call(secure, "DELETE", f"{API}/tokens/{refresh['id']}/", 204, ADMIN)
    again = await secure.post("/token", headers=FORM, data={
        "grant_type": "refresh_token", "refresh_token": answer["refresh_token"]})
    assert again.status == 401
    # A refresh token does not open the API, nor an API token the token server.
    assert not await works(secure, answer["refresh_token"])
    # docker login's GET form: offline_token=true.
    docker = await call(secure, "GET", "/token?service=lazyreg&offline_token=true"
                        "&client_id=docker", 200, basic("vera", "vera-password"))
    assert "refresh_token" in docker
    anonymous = await call(secure, "GET", "/token?service=lazyreg&offline_token=true", 200)
    assert "refresh_token" not in anonymous


@pytest.mark.parametrize(("data", "headers", "status", "field"), [
    ({"grant_type": "password", "username": "vera", "password": "wrong"}, FORM, 401, None),
    ({"grant_type": "password", "username": "nobody", "password": "x"}, FORM, 401, None),
    ({"grant_type": "refresh_token", "refresh_token": "not.a.jwt"}, FORM, 401, None),
    ({"grant_type": "client_credentials"}, FORM, 400, "grant_type"),
    ({"grant_type": "password", "password": "x"}, FORM, 400, "username"),
    ({"grant_type": "refresh_token"}, FORM, 400, "refresh_token"),
    ({"grant_type": "password", "username": "vera", "password": "vera-password",
      "service": "elsewhere"}, FORM, 400, "service"),
    ({"grant_type": "password", "username": "vera", "password": "vera-password",
      "scope": "nonsense"}, FORM, 400, "scope"),
    ('{"grant_type": "password"}', {"Content-Type": "application/json"}, 400, "Content-Type"),
    ("grant_type=password&" + "a=b&" * 20_000, FORM, 413, None),
])
async def test_post_token_refuses_bad_forms(secure: Client, data: Any, headers: dict[str, str],
                                            status: int, field: str | None) -> None:
    await make_user(secure, "vera")
    resp = await secure.post("/token", data=data, headers=headers)
    body = await resp.json()
    assert resp.status == status, body
    assert "token" not in body and "access_token" not in body
    if field:
        assert body["field"] == field


async def test_an_account_holds_a_bounded_number_of_tokens(secure: Client) -> None:
    vera = await make_user(secure, "vera")
    parent = await mint(secure, vera)
    for _ in range(MAX_TOKENS_PER_ACCOUNT - 1):
        await mint(secure, bearer(parent["token"]))
    refused = await call(secure, "POST", f"{API}/tokens/", 409, bearer(parent["token"]), {})
    assert "revoke some" in refused["detail"]
    # Revoking the parent revokes all 100 at once.
    await call(secure, "DELETE", f"{API}/tokens/{parent['id']}/", 204, vera)
    assert (await call(secure, "GET", f"{API}/tokens/", 200, vera))["count"] == 0
    await mint(secure, vera)
