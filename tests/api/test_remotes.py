"""remotes/: CRUD, the write-only password, validation naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import API, Client, delete, get, patch, post, remote_body

PEM = """-----BEGIN CERTIFICATE-----
MIIBfTCCASOgAwIBAgIUIg5M1yH5vXqMmrVAWl2ysyB8qWwwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbGF6eXJlZy1jYTAeFw0yNDAxMDEwMDAwMDBaFw0zNDAxMDEw
MDAwMDBaMBQxEjAQBgNVBAMMCWxhenlyZWctY2EwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAQ2lZEY1mFvJ0Bqf1n2vG3N0yGvXq7pXzmR8FvU0xkq0r0nS3s0x6uV
m2cbqf8y9mX4w6yGk9cJ1m8KpY5V3dWyo1MwUTAdBgNVHQ4EFgQUq1lYy0pZ4nFf
-----END CERTIFICATE-----
"""


async def test_create_returns_the_remote_with_defaults(client: Client) -> None:
    created = await post(client, "remotes/", remote_body())
    assert created == {
        "name": "hub", "url": "https://registry.example.test", "upstream_name": "library/alpine",
        "policy": "on_demand", "include_tags": None, "exclude_tags": None, "username": None,
        "has_password": False, "tls_verify": True, "ca_cert": None, "proxy_url": None,
        "has_proxy_credentials": False, "download_concurrency": 8,
        "allow_private_redirects": False, "include_referrers": False, "max_tags": 100000,
        "created": created["created"],
    }
    assert created["created"].endswith("Z")
    assert await get(client, "remotes/hub/") == created


async def test_password_is_write_only(client: Client) -> None:
    body = remote_body(username="bob", password="s3cret", include_tags=["v1*"])
    created = await post(client, "remotes/", body)
    listed = await get(client, "remotes/")
    shown = await get(client, "remotes/hub/")
    for answer in (created, listed["results"][0], shown):
        assert "password" not in answer
        assert answer["has_password"] is True
        assert "s3cret" not in str(answer)
    assert shown["username"] == "bob"
    assert shown["include_tags"] == ["v1*"]
    # A PATCH that does not mention the password keeps it; null clears it.
    assert (await patch(client, "remotes/hub/", {"policy": "immediate"}))["has_password"]
    assert not (await patch(client, "remotes/hub/", {"password": None}))["has_password"]


async def test_patch_changes_only_the_given_fields(client: Client) -> None:
    await post(client, "remotes/", remote_body(download_concurrency=4))
    changed = await patch(client, "remotes/hub/", {"url": "http://mirror.test:5000/",
                                                   "exclude_tags": ["*-rc*"]})
    assert changed["url"] == "http://mirror.test:5000"
    assert changed["exclude_tags"] == ["*-rc*"]
    assert changed["download_concurrency"] == 4
    assert changed["upstream_name"] == "library/alpine"


async def test_put_replaces_the_remote(client: Client) -> None:
    await post(client, "remotes/", remote_body(policy="immediate", password="x"))
    resp = await client.put(f"{API}/remotes/hub/", json=remote_body(upstream_name="busybox"))
    replaced: dict[str, Any] = await resp.json()
    assert resp.status == 200, replaced
    assert replaced["upstream_name"] == "busybox"
    assert replaced["policy"] == "on_demand"
    assert replaced["has_password"] is False


async def test_rename_and_duplicate_names(client: Client) -> None:
    await post(client, "remotes/", remote_body("a"))
    await post(client, "remotes/", remote_body("b"))
    conflict = await post(client, "remotes/", remote_body("a"), status=409)
    assert conflict["field"] == "name"
    assert "already exists" in conflict["detail"]
    await patch(client, "remotes/b/", {"name": "a"}, status=409)
    await patch(client, "remotes/b/", {"name": "c"})
    await get(client, "remotes/b/", status=404)
    await get(client, "remotes/c/")


async def test_delete(client: Client) -> None:
    await post(client, "remotes/", remote_body())
    await delete(client, "remotes/hub/")
    missing = await get(client, "remotes/hub/", status=404)
    assert missing["detail"] == "remote 'hub' not found"
    await delete(client, "remotes/hub/", status=404)
    await patch(client, "remotes/hub/", {"policy": "immediate"}, status=404)


async def test_ca_cert_must_be_pem(client: Client) -> None:
    error = await post(client, "remotes/", remote_body(ca_cert="not a certificate"), status=400)
    assert error["field"] == "ca_cert"
    error = await post(client, "remotes/", remote_body(ca_cert=PEM), status=400)
    assert error["field"] == "ca_cert"


@pytest.mark.parametrize(("field", "value"), [
    ("url", "ftp://registry.example.test"),
    ("url", "registry.example.test"),
    ("url", "https://"),
    ("policy", "sometimes"),
    ("name", "has space"),
    ("name", "-leading-dash"),
    ("name", "a/b"),
    ("upstream_name", "Library/Alpine"),
    ("upstream_name", "alpine/"),
    ("download_concurrency", 0),
    ("download_concurrency", 65),
    ("include_tags", "v1*"),
    ("include_tags", [""]),
    ("proxy_url", "socks5://proxy:1080"),
    ("tls_verify", "maybe"),
    ("unknown_field", 1),
])
async def test_invalid_field_is_named(client: Client, field: str, value: object) -> None:
    error = await post(client, "remotes/", {**remote_body(), field: value}, status=400)
    assert error["field"] == field
    assert error["detail"].startswith(f"{field}: ")


async def test_invalid_patch_is_named_and_changes_nothing(client: Client) -> None:
    await post(client, "remotes/", remote_body())
    error = await patch(client, "remotes/hub/", {"url": "nope", "policy": "immediate"},
                        status=400)
    assert error["field"] == "url"
    assert (await get(client, "remotes/hub/"))["policy"] == "on_demand"


@pytest.mark.parametrize("field", ["name", "url", "upstream_name"])
async def test_required_fields(client: Client, field: str) -> None:
    body = remote_body()
    del body[field]
    error = await post(client, "remotes/", body, status=400)
    assert error["field"] == field


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"", b"\xff\xfe"])
async def test_bad_json_body(client: Client, raw: bytes) -> None:
    resp = await client.post(f"{API}/remotes/", data=raw,
                             headers={"Content-Type": "application/json"})
    assert resp.status == 400
    error = await resp.json()
    assert error["detail"] in ("invalid JSON body", "the request body must be a JSON object")


async def test_path_without_trailing_slash(client: Client) -> None:
    await post(client, "remotes", remote_body())
    assert (await get(client, "remotes/hub"))["name"] == "hub"
