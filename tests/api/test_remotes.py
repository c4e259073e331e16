"""remotes/: CRUD, the write-only password, validation naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lazyreg.db.models import Blob, BlobSource, Remote
from tests.api.conftest import (
    API,
    Client,
    database,
    delete,
    digest_of,
    get,
    patch,
    post,
    remote_body,
    seed,
    store,
)

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
        "tag_ttl": 300, "negative_ttl": 30, "include_names": None, "exclude_names": None,
        "platforms": None, "prefetch": "none", "created": created["created"],
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


@pytest.mark.parametrize("field", ["name", "url"])
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


@pytest.mark.parametrize(("field", "value"), [
    ("include_tags", ["["]),
    ("include_tags", ["v[1-"]),
    ("exclude_tags", ["ok", "[!"]),
    ("include_tags", ["v1 *"]),
    ("include_tags", ["a" * 256]),
    ("include_tags", ["v*"] * 101),
    ("tls_verify", "true"),
    ("tls_verify", 1),
    ("download_concurrency", "8"),
    ("download_concurrency", 8.0),
    ("download_concurrency", True),
    ("ca_cert", "é"),
    ("url", "http://example.test:99999"),
    ("url", "http://exa mple.test"),
    ("name", "hub\n"),
    ("username", "u" * 4097),
    ("password", "a\u0000b"),
])
async def test_loose_input_is_refused(client: Client, field: str, value: object) -> None:
    error = await post(client, "remotes/", {**remote_body(), field: value}, status=400)
    assert error["field"] == field, error


@pytest.mark.parametrize("globs", [["v1.*", "*-alpine", "3.1?", "[0-9]*", "[!v]*", "[]]x",
                                    "latest"]])
async def test_valid_globs_are_kept(client: Client, globs: list[str]) -> None:
    created = await post(client, "remotes/", remote_body(include_tags=globs, exclude_tags=globs))
    assert created["include_tags"] == created["exclude_tags"] == globs


# --- deleting a remote that repositories still need ------------------------


async def sources(client: Client, remote: str, layers: list[str]) -> None:
    """Record `remote` as a source of the blobs named like in `seed`."""
    def insert(session: Session) -> None:
        remote_id = session.scalars(select(Remote.id).where(Remote.name == remote)).one()
        for layer in layers:
            blob_id = session.scalars(select(Blob.id).where(Blob.digest == digest_of(layer))).one()
            session.add(BlobSource(blob_id=blob_id, remote_id=remote_id, upstream_name="x"))
    await database(client).write(insert)


async def delete_status(client: Client, path: str) -> tuple[int, dict[str, Any] | None]:
    resp = await client.delete(f"{API}/{path}")
    return resp.status, (await resp.json() if resp.status != 204 else None)


@pytest.fixture
async def needed(client: Client) -> Client:
    """Remote `hub`, the only source of layers a and b of repositories `r` and `s`."""
    await post(client, "remotes/", remote_body())
    for name in ("s", "r"):
        await post(client, "repositories/", {"name": name})
        await seed(client, name, {"v1": ["a", "b"]})
    await sources(client, "hub", ["a", "b"])
    return client


async def test_delete_of_the_only_source_is_a_conflict_naming_the_repositories(
        needed: Client) -> None:
    status, error = await delete_status(needed, "remotes/hub/")
    assert status == 409 and error is not None
    assert "these repositories need: r, s;" in error["detail"], error
    assert "?force=true" in error["detail"]
    assert (await get(needed, "remotes/hub/"))["name"] == "hub"


async def test_delete_with_force(needed: Client) -> None:
    assert (await delete_status(needed, "remotes/hub/?force=true"))[0] == 204
    assert await database(needed).read(
        lambda s: s.scalar(select(func.count()).select_from(BlobSource))) == 0


async def test_stored_blobs_need_no_source(needed: Client) -> None:
    await store(needed, ["a"])
    assert (await delete_status(needed, "remotes/hub/"))[0] == 409  # b is still missing
    await store(needed, ["b"])
    assert (await delete_status(needed, "remotes/hub/"))[0] == 204


async def test_another_source_is_enough(needed: Client) -> None:
    await post(needed, "remotes/", remote_body("mirror"))
    await sources(needed, "mirror", ["a", "b"])
    assert (await delete_status(needed, "remotes/hub/"))[0] == 204
    # Now `mirror` is the only one left.
    assert (await delete_status(needed, "remotes/mirror/"))[0] == 409


async def test_only_the_latest_and_served_versions_count(needed: Client) -> None:
    for name in ("r", "s"):
        await seed(needed, name, {"v2": ["c"]})  # version 2 holds neither a nor b
    assert (await delete_status(needed, "remotes/hub/"))[0] == 204
    await post(needed, "remotes/", remote_body())
    await sources(needed, "hub", ["a"])
    await post(needed, "distributions/", {"name": "old", "base_path": "old", "repository": "s",
                                          "repository_version": 1})
    await post(needed, "distributions/", {"name": "new", "base_path": "new", "repository": "r"})
    status, error = await delete_status(needed, "remotes/hub/")
    assert status == 409 and error is not None
    assert "these repositories need: s;" in error["detail"], error
    await patch(needed, "distributions/old/", {"repository_version": None})
    assert (await delete_status(needed, "remotes/hub/"))[0] == 204


# --- tag patterns: re: regexes and pinned digests (issue 24) ------------------

PIN = "sha256:" + "a" * 64


@pytest.mark.parametrize(("field", "pattern"), [
    ("include_tags", "re:(unclosed"),
    ("include_tags", r"re:(a)\1"),  # a back-reference: RE2 never backtracks
    ("exclude_tags", "re:(?=x)"),
    ("include_tags", "re:"),
    ("include_tags", "sha256:abc"),
    ("exclude_tags", PIN),  # digests are pinned in include_tags only
])
async def test_a_bad_tag_pattern_is_a_400_naming_field_and_pattern(
        client: Client, field: str, pattern: str) -> None:
    error = await post(client, "remotes/", {**remote_body(), field: ["v*", pattern]},
                       status=400)
    assert error["field"] == field, error
    assert repr(pattern) in error["detail"], error


async def test_regexes_digests_platforms_and_prefetch_are_kept(client: Client) -> None:
    created = await post(client, "remotes/", remote_body(
        include_tags=[r"re:^v1\.[0-9]+$", PIN, "latest"], exclude_tags=["re:.*-rc[0-9]*"],
        platforms=["linux/amd64", "linux/arm64/v8", "linux/amd64"], prefetch="platform"))
    assert created["include_tags"] == [r"re:^v1\.[0-9]+$", PIN, "latest"]
    assert created["exclude_tags"] == ["re:.*-rc[0-9]*"]
    assert created["platforms"] == ["linux/amd64", "linux/arm64/v8"]
    assert created["prefetch"] == "platform"


@pytest.mark.parametrize(("field", "value"), [
    ("platforms", ["linux"]), ("platforms", ["linux/amd64/v8/x"]), ("platforms", ["../x"]),
    ("prefetch", "some"),
])
async def test_bad_platforms_and_prefetch_are_refused(client: Client, field: str,
                                                      value: object) -> None:
    error = await post(client, "remotes/", {**remote_body(), field: value}, status=400)
    assert error["field"] == field, error
