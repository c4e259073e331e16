"""Access control in process, with --auth on: API roles and tokens, private distributions.

The real clients (skopeo, podman) go through the same paths in tests/e2e/test_access.py.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient, TestServer

from lazyreg.app import create_app
from lazyreg.auth.tokens import Holder, issue_account_token, issue_registry_token
from lazyreg.config import Settings
from lazyreg.state import STATE
from tests.api.conftest import API, Client, seed
from tests.sqlite import seeded

ADMIN_PASSWORD = "admin-secret-1"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ADMIN = basic("admin", ADMIN_PASSWORD)


@pytest.fixture
async def secure(tmp_path: Path, template: Path) -> AsyncIterator[Client]:
    settings = Settings(data_dir=seeded(tmp_path, template), auth="on",
                        admin_password=ADMIN_PASSWORD, upstream_retries=0, upstream_backoff=0)
    async with TestClient(TestServer(create_app(settings))) as client:
        yield client


async def call(client: Client, method: str, path: str, status: int,
               headers: dict[str, str] | None = None, body: Any = None) -> Any:
    resp = await client.request(method, path, headers=headers, json=body)
    data = await resp.json() if resp.content_type == "application/json" else await resp.text()
    assert resp.status == status, (method, path, data)
    return data


async def make_user(client: Client, name: str, role: str = "viewer") -> dict[str, str]:
    await call(client, "POST", f"{API}/users/", 201, ADMIN,
               {"username": name, "password": f"{name}-password", "role": role})
    return basic(name, f"{name}-password")


async def api_token(client: Client, headers: dict[str, str]) -> str:
    answer = await call(client, "POST", f"{API}/tokens/", 201, headers)
    assert set(answer) == {"token", "id", "expires"}
    return str(answer["token"])


async def test_anonymous_api_requests_are_401_with_a_challenge(secure: Client) -> None:
    for method, path in (("GET", "remotes/"), ("GET", "tasks/"), ("GET", "openapi.json"),
                         ("POST", "remotes/"), ("DELETE", "repositories/x/"),
                         ("GET", "no/such/path/"), ("POST", "tokens/")):
        resp = await secure.request(method, f"{API}/{path}", json={})
        assert resp.status == 401, (method, path)
        assert "Bearer" in resp.headers["WWW-Authenticate"]
        assert "Basic" in resp.headers["WWW-Authenticate"]
        assert (await resp.json())["detail"].startswith("authentication required")


async def test_viewer_reads_and_its_writes_are_403(secure: Client) -> None:
    token = await api_token(secure, await make_user(secure, "vera"))
    as_vera = bearer(token)
    assert (await call(secure, "GET", f"{API}/remotes/", 200, as_vera))["count"] == 0
    await call(secure, "GET", f"{API}/status/", 200, as_vera)
    await call(secure, "GET", f"{API}/users/vera/", 200, as_vera)
    for method, path, body in (
            ("POST", "remotes/", {"name": "r", "url": "https://x.test", "upstream_name": "a"}),
            ("POST", "repositories/", {"name": "r"}), ("GET", "users/", None),
            ("GET", "users/admin/", None), ("DELETE", "users/admin/", None),
            ("POST", "users/", {"username": "eve", "password": "12345678", "role": "admin"})):
        answer = await call(secure, method, f"{API}/{path}", 403, as_vera, body)
        assert "viewer" in answer["detail"]
    await call(secure, "GET", f"{API}/repositories/", 200, as_vera)


async def test_admin_token_works_and_expired_forged_or_stale_ones_do_not(secure: Client,
                                                                     ) -> None:
    token = await api_token(secure, ADMIN)
    await call(secure, "POST", f"{API}/repositories/", 201, bearer(token), {"name": "made"})
    key = secure.app[STATE].services.secrets.signing_key
    admin = Holder(1, 0, "admin")
    expired = issue_account_token(key, admin, -60).token
    forged = issue_account_token(b"not the server's key" * 2, admin, 600).token
    registry = issue_registry_token(key, admin, [], 300).token
    claims = jwt.decode(token, options={"verify_signature": False})
    unsigned = jwt.encode({**claims, "exp": int(time.time()) + 600}, None, algorithm="none")
    for bad in (expired, forged, registry, unsigned, token[:-4] + "AAAA", "x" * 7_000):
        resp = await secure.get(f"{API}/remotes/", headers=bearer(bad))
        assert resp.status == 401, bad[:40]
        assert "WWW-Authenticate" in resp.headers
    # A deleted user's tokens stop working at once.
    vera = await api_token(secure, await make_user(secure, "vera"))
    await call(secure, "DELETE", f"{API}/users/vera/", 204, ADMIN)
    await call(secure, "GET", f"{API}/remotes/", 401, bearer(vera))
    await call(secure, "GET", f"{API}/remotes/", 401, basic("admin", "wrong"))


async def test_users_api(secure: Client) -> None:
    created = await call(secure, "POST", f"{API}/users/", 201, ADMIN,
                         {"username": "bob", "password": "bob-password", "role": "viewer"})
    assert set(created) == {"username", "role", "created"}
    await call(secure, "POST", f"{API}/users/", 409, ADMIN,
               {"username": "bob", "password": "other-password"})
    bad = await call(secure, "POST", f"{API}/users/", 400, ADMIN,
                     {"username": "x" * 10_000, "password": "12345678"})
    assert bad["field"] == "username"
    assert (await call(secure, "POST", f"{API}/users/", 400, ADMIN,
                       {"username": "c", "password": "short"}))["field"] == "password"
    listed = await call(secure, "GET", f"{API}/users/", 200, ADMIN)
    assert [u["username"] for u in listed["results"]] == ["admin", "bob"]
    assert "password" not in str(listed) and "argon2" not in str(listed)
    answer = await call(secure, "DELETE", f"{API}/users/admin/", 409, ADMIN)
    assert "last admin" in answer["detail"]
    await call(secure, "PATCH", f"{API}/users/bob/", 200, ADMIN, {"password": "new-password"})
    await call(secure, "GET", f"{API}/users/bob/", 200, basic("bob", "new-password"))
    await call(secure, "GET", f"{API}/users/bob/", 401, basic("bob", "bob-password"))
    await call(secure, "GET", f"{API}/users/nobody/", 404, ADMIN)


async def test_every_write_is_audited_with_its_user(secure: Client,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="lazyreg.audit"):
        await call(secure, "POST", f"{API}/repositories/", 201, ADMIN, {"name": "r1"})
        await call(secure, "GET", f"{API}/repositories/", 200, ADMIN)
        await call(secure, "DELETE", f"{API}/repositories/nope/", 404, ADMIN)
        await call(secure, "POST", f"{API}/repositories/", 401, None, {"name": "r2"})
    lines = [r.getMessage() for r in caplog.records if r.name == "lazyreg.audit"]
    assert len(lines) == 3, lines
    assert "user=admin" in lines[0] and "POST '/api/v1/repositories/' -> 201" in lines[0]
    assert "user=admin" in lines[1] and "DELETE" in lines[1] and "-> 404" in lines[1]
    assert "user=-" in lines[2] and "-> 401" in lines[2]


# ---------------------------------------------------------------- the registry side


@pytest.fixture
async def published(secure: Client) -> Client:
    """Distributions `pub` (public), `priv` (vera reads it) and `other` (bob reads it)."""
    await make_user(secure, "vera")
    await make_user(secure, "bob")
    for name, private, readers in (("pub", False, []), ("priv", True, ["vera"]),
                                   ("other", True, ["bob"])):
        await call(secure, "POST", f"{API}/repositories/", 201, ADMIN, {"name": name})
        await seed(secure, name, {"v1": [f"{name}-layer"]})
        await call(secure, "POST", f"{API}/distributions/", 201, ADMIN,
                   {"name": name, "base_path": f"team/{name}", "repository": name,
                    "private": private, "readers": readers})
    return secure


async def registry_token(client: Client, scopes: list[str],
                         headers: dict[str, str] | None = None) -> str:
    query = "&".join(f"scope={s}" for s in scopes)
    answer = await call(client, "GET", f"/token?service=lazyreg&{query}", 200, headers)
    assert answer["token"] == answer["access_token"] and answer["expires_in"] == 300
    return str(answer["token"])


async def test_private_distribution_asks_for_a_token_of_its_scope(published: Client) -> None:
    resp = await published.get("/v2/team/priv/manifests/v1")
    assert resp.status == 401
    body = await resp.json()
    assert body["errors"][0]["code"] == "UNAUTHORIZED"
    origin = str(published.make_url("/")).rstrip("/")
    assert resp.headers["WWW-Authenticate"] == (
        f'Bearer realm="{origin}/token",service="lazyreg",'
        'scope="repository:team/priv:pull"')
    # The ping asks for a token too: that is what sends clients to the token server.
    resp = await published.get("/v2/")
    assert resp.status == 401 and "scope" not in resp.headers["WWW-Authenticate"]
    # A public one answers without any token.
    resp = await published.get("/v2/team/pub/manifests/v1", headers={"Accept": MANIFEST})
    assert resp.status == 200


async def test_reader_pulls_non_reader_and_anonymous_do_not(published: Client) -> None:
    vera = await registry_token(published, ["repository:team/priv:pull"],
                                basic("vera", "vera-password"))
    resp = await published.get("/v2/team/priv/manifests/v1", headers=bearer(vera))
    assert resp.status == 200 and await resp.read() == b"{}"
    await call(published, "GET", "/v2/team/priv/tags/list", 200, bearer(vera))
    await call(published, "GET", "/v2/", 200, bearer(vera))
    bob = await registry_token(published, ["repository:team/priv:pull"],
                               basic("bob", "bob-password"))
    anonymous = await registry_token(published, ["repository:team/priv:pull"])
    for token in (bob, anonymous):
        for path in ("manifests/v1", "tags/list", "blobs/sha256:" + "0" * 64):
            resp = await published.get(f"/v2/team/priv/{path}", headers=bearer(token))
            assert resp.status == 401
            assert "errors" in await resp.json()
    # The admin may pull everything.
    admin = await registry_token(published, ["repository:team/priv:pull"], ADMIN)
    await call(published, "GET", "/v2/team/priv/manifests/v1", 200, bearer(admin))


async def test_a_token_for_one_scope_does_not_open_another(published: Client) -> None:
    bob = await registry_token(published, ["repository:team/other:pull",
                                           "repository:team/priv:pull"],
                               basic("bob", "bob-password"))
    await call(published, "GET", "/v2/team/other/manifests/v1", 200, bearer(bob))
    await call(published, "GET", "/v2/team/priv/manifests/v1", 401, bearer(bob))
    claims = jwt.decode(bob, options={"verify_signature": False})
    assert [a["name"] for a in claims["access"]] == ["team/other"]


async def test_catalog_lists_private_ones_only_to_their_readers(published: Client) -> None:
    anonymous = await call(published, "GET", "/v2/_catalog", 200)
    assert anonymous["repositories"] == ["team/pub"]
    vera = await registry_token(published, ["registry:catalog:*"],
                                basic("vera", "vera-password"))
    listed = await call(published, "GET", "/v2/_catalog", 200, bearer(vera))
    assert listed["repositories"] == ["team/priv", "team/pub"]
    admin = await registry_token(published, [], ADMIN)
    listed = await call(published, "GET", "/v2/_catalog", 200, bearer(admin))
    assert listed["repositories"] == ["team/other", "team/priv", "team/pub"]


async def test_readers_must_be_users_and_are_shown(published: Client) -> None:
    answer = await call(published, "PATCH", f"{API}/distributions/priv/", 400, ADMIN,
                        {"readers": ["vera", "ghost"]})
    assert answer["field"] == "readers" and "ghost" in answer["detail"]
    shown = await call(published, "PATCH", f"{API}/distributions/priv/", 200, ADMIN,
                       {"readers": ["bob", "vera"], "anonymous_pull_through": False})
    assert shown["readers"] == ["bob", "vera"] and shown["anonymous_pull_through"] is False
    # Deleting a user removes it from the readers.
    await call(published, "DELETE", f"{API}/users/bob/", 204, ADMIN)
    shown = await call(published, "GET", f"{API}/distributions/priv/", 200, ADMIN)
    assert shown["readers"] == ["vera"]


# ---------------------------------------------------------------- fuzzing


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _fuzz_headers(key: bytes) -> dict[str, str]:
    now = int(time.time())
    priv = [{"type": "repository", "name": "team/priv", "actions": ["pull"]}]
    claims = {"iss": "lazyreg", "aud": "lazyreg", "sub": "vera", "iat": now, "nbf": now,
              "exp": now + 300, "access": priv}
    return {
        "basic-empty": "Basic",
        "basic-not-base64": "Basic !!!",
        "basic-no-colon": "Basic " + _b64(b"vera"),
        "basic-no-user": "Basic " + _b64(b":vera-password"),
        "basic-not-utf8": "Basic " + _b64(b"\xff\xfe:\xff"),
        "basic-5KB-username": "Basic " + _b64(b"v" * 5000 + b":x"),
        "basic-10KB-username": "Basic " + _b64(b"v" * 10_240 + b":x"),
        "basic-wrong-password": "Basic " + _b64(b"vera:wrong"),
        "basic-nul": "Basic " + _b64(b"vera\x00:vera-password"),
        "bearer-empty": "Bearer ",
        "bearer-garbage": "Bearer not.a.jwt",
        "bearer-alg-none": "Bearer " + jwt.encode(claims, None, algorithm="none"),
        "bearer-wrong-key": "Bearer " + jwt.encode(claims, b"w" * 32, algorithm="HS256"),
        "bearer-expired": "Bearer " + jwt.encode({**claims, "exp": now - 60}, key,
                                                 algorithm="HS256"),
        "bearer-api-token": "Bearer " + issue_account_token(key, Holder(2, 0, "vera"),
                                                            600).token,
        "bearer-other-scope": "Bearer " + issue_registry_token(
            key, Holder(3, 0, "bob"), [issue_scope("team/other")], 300).token,
        "digest": 'Digest username="vera"',
        "bearer-10KB": "Bearer " + "x" * 10_240,
    }


def issue_scope(name: str) -> Any:
    from lazyreg.auth.tokens import Access
    return Access("repository", name, ("pull",))


async def test_fuzzed_credentials_get_400_401_or_429_and_never_content(published: Client) -> None:
    key = published.app[STATE].services.secrets.signing_key
    layer = "sha256:" + __import__("hashlib").sha256(b"priv-layer").hexdigest()
    targets = ["/token?service=lazyreg&scope=repository:team/priv:pull",
               "/v2/team/priv/manifests/v1", f"/v2/team/priv/blobs/{layer}",
               "/v2/team/priv/tags/list", "/v2/", f"{API}/remotes/", f"{API}/tokens/"]
    seen: dict[int, int] = {}
    for name, header in _fuzz_headers(key).items():
        for target in targets:
            method = "POST" if target.endswith("tokens/") else "GET"
            if (name == "bearer-api-token" and target.startswith(API)) or (
                    name == "bearer-other-scope" and target == "/v2/"):
                continue  # a valid credential for that target: not fuzz
            resp = await published.request(method, target, headers={"Authorization": header})
            raw = await resp.read()
            seen[resp.status] = seen.get(resp.status, 0) + 1
            # 429: the wrong passwords tried here trip the login throttle.
            assert resp.status in (400, 401, 429), (name, target, resp.status, raw[:200])
            assert b'"token":' not in raw and b'"tags":' not in raw and raw != b"{}", (
                name, target)
    assert seen.get(401, 0) > seen.get(400, 0)


@pytest.mark.parametrize("query", [
    pytest.param("scope=nonsense", id="nonsense"),
    pytest.param("scope=repository::pull", id="no-name"),
    pytest.param("service=elsewhere", id="service"),
    pytest.param("&".join(f"scope=repository:r{i}:pull" for i in range(40)), id="40-scopes"),
    pytest.param("scope=repository:" + "a" * 600 + ":pull", id="600-byte-scope"),
    pytest.param("scope=repository:" + "a" * 9000 + ":pull", id="9KB-scope"),
])
async def test_fuzzed_token_requests_are_400(published: Client, query: str) -> None:
    resp = await published.get(f"/token?{query}", headers=basic("vera", "vera-password"))
    assert resp.status == 400
    assert b'"token":' not in await resp.read()


async def test_token_for_scopes_of_other_repositories_grants_nothing(published: Client) -> None:
    token = await registry_token(published, ["repository:team/other:pull",
                                             "repository:nowhere:pull",
                                             "repository:team/priv:push"],
                                 basic("vera", "vera-password"))
    assert jwt.decode(token, options={"verify_signature": False})["access"] == []
    for path in ("/v2/team/other/manifests/v1", "/v2/team/priv/manifests/v1"):
        await call(published, "GET", path, 401, bearer(token))


async def test_unknown_and_private_names_get_the_same_401(published: Client) -> None:
    """Issue 20, finding 7: a client without pull rights cannot tell them apart."""
    bob = await registry_token(published, ["repository:team/priv:pull",
                                           "repository:team/ghost:pull"],
                               basic("bob", "bob-password"))
    for headers in ({}, bearer(bob)):
        answers = []
        for name in ("team/priv", "team/ghost"):
            for path in ("manifests/v1", "tags/list", "blobs/sha256:" + "0" * 64):
                resp = await published.get(f"/v2/{name}/{path}", headers=headers)
                body = await resp.json()
                answers.append((resp.status, body["errors"][0]["code"],
                                body["errors"][0]["message"].replace(name, "NAME"),
                                resp.headers["WWW-Authenticate"].replace(name, "NAME")))
        assert all(a == answers[0] for a in answers), answers
        assert answers[0][:2] == (401, "UNAUTHORIZED")
    # A reader still tells a missing manifest from a missing name.
    vera = await registry_token(published, ["repository:team/priv:pull"],
                                basic("vera", "vera-password"))
    resp = await published.get("/v2/team/priv/manifests/nope", headers=bearer(vera))
    assert resp.status == 404
    # API answers say nosniff.
    resp = await published.get(f"{API}/remotes/", headers=ADMIN)
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    resp = await published.get(f"{API}/remotes/")
    assert resp.status == 401 and resp.headers["X-Content-Type-Options"] == "nosniff"
