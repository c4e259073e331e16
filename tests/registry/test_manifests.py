"""GET|HEAD /v2/<name>/manifests/<reference>: bytes, negotiation, ETag and 304, the cache."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from lazyreg.db.models import Distribution, Repository, RepositoryVersion
from lazyreg.oci import mediatypes as mt
from lazyreg.registry.conditional import if_none_match
from lazyreg.registry.manifests import accepted_types
from lazyreg.state import STATE
from tests.registry.conftest import (
    Client,
    Stored,
    add_list,
    add_manifest,
    add_repository,
    error_code,
    fetch,
    image,
    set_version,
    write,
)

ALL_TYPES = ", ".join(sorted(mt.KNOWN_MANIFESTS))


async def one_image(client: Client, name: str = "app") -> Stored:
    def fill(session: Session) -> Stored:
        add_repository(session, name)
        manifest = add_manifest(session, image(name))
        set_version(session, name, {"v1": manifest})
        return manifest
    return await write(client, fill)


@pytest.mark.parametrize("reference", ["v1", "digest"])
async def test_get_and_head_carry_the_digest_as_etag(client: Client, reference: str) -> None:
    manifest = await one_image(client)
    ref = manifest.digest if reference == "digest" else "v1"
    status, headers, body = await fetch(client, f"/v2/app/manifests/{ref}")
    assert (status, body) == (200, manifest.data)
    assert headers["ETag"] == f'"{manifest.digest}"'
    assert headers["Docker-Content-Digest"] == manifest.digest
    assert headers["Content-Type"] == mt.OCI_MANIFEST
    status, head, body = await fetch(client, f"/v2/app/manifests/{ref}", "HEAD")
    assert (status, body) == (200, b"")
    assert head["ETag"] == headers["ETag"]
    assert head["Content-Length"] == str(len(manifest.data))


@pytest.mark.parametrize("reference", ["v1", "digest"])
async def test_if_none_match_answers_304(client: Client, reference: str) -> None:
    manifest = await one_image(client)
    ref = manifest.digest if reference == "digest" else "v1"
    for condition in ('"{d}"', 'W/"{d}"', "*", '"sha256:other", "{d}"', '"x",W/"{d}" , "y"'):
        for method in ("GET", "HEAD"):
            status, headers, body = await fetch(
                client, f"/v2/app/manifests/{ref}", method,
                {"If-None-Match": condition.format(d=manifest.digest)})
            assert (status, body) == (304, b""), (condition, method)
            assert headers["ETag"] == f'"{manifest.digest}"'
            assert headers["Docker-Content-Digest"] == manifest.digest
    for condition in ('"sha256:other"', "", "garbage", '"{d}x"', "{d}"):
        status, _, body = await fetch(client, f"/v2/app/manifests/{ref}", "GET",
                                      {"If-None-Match": condition.format(d=manifest.digest)})
        assert (status, body) == (200, manifest.data), condition


def test_if_none_match_parsing() -> None:
    d = "sha256:" + "a" * 64
    assert if_none_match(f'"{d}"', d)
    assert if_none_match(f' W/"{d}" ', d)
    assert if_none_match('"a", *', d)
    assert not if_none_match(None, d)
    assert not if_none_match(f'"{d}', d)
    assert not if_none_match(f'W/{d}', d)


async def test_a_list_goes_to_clients_that_accept_it_and_amd64_to_others(client: Client) -> None:
    def fill(session: Session) -> tuple[Stored, Stored]:
        add_repository(session, "multi")
        amd64 = add_manifest(session, image("amd64"))
        arm64 = add_manifest(session, image("arm64"))
        index = add_list(session, {("linux", "arm64"): arm64, ("linux", "amd64"): amd64})
        set_version(session, "multi", {"latest": index})
        return index, amd64
    index, amd64 = await write(client, fill)
    for accept in (None, ALL_TYPES, "*/*", f"{mt.OCI_INDEX};q=0.9, {mt.OCI_MANIFEST}"):
        status, headers, body = await fetch(client, "/v2/multi/manifests/latest", "GET",
                                            {"Accept": accept} if accept else {})
        assert (status, body, headers["ETag"]) == (200, index.data, f'"{index.digest}"'), accept
    status, headers, body = await fetch(client, "/v2/multi/manifests/latest", "GET",
                                        {"Accept": f"{mt.OCI_MANIFEST}, text/plain"})
    assert (status, body, headers["ETag"]) == (200, amd64.data, f'"{amd64.digest}"')
    # A client that accepts neither gets the list: better than nothing.
    status, _, body = await fetch(client, "/v2/multi/manifests/latest", "GET",
                                  {"Accept": mt.DOCKER_MANIFEST})
    assert (status, body) == (200, index.data)


def test_accept_is_reduced_to_known_manifest_types() -> None:
    assert accepted_types([]) is None
    assert accepted_types(["*/*"]) is None
    assert accepted_types([f"{mt.OCI_INDEX.upper()}; q=0.5", "x/y, application/json"]) \
        == frozenset({mt.OCI_INDEX})
    assert accepted_types([f"a/x{i}, {mt.OCI_MANIFEST}" for i in range(3)]) \
        == frozenset({mt.OCI_MANIFEST})
    assert accepted_types(["text/plain"]) == frozenset()


async def test_distinct_accept_headers_keep_one_copy_of_the_bytes(client: Client) -> None:
    manifest = await one_image(client)
    cache = client.app[STATE].lookups
    for i in range(300):
        accept = f"application/x-probe-{i}, {mt.OCI_MANIFEST}, {mt.DOCKER_MANIFEST}"
        status, _, body = await fetch(client, "/v2/app/manifests/v1", "GET", {"Accept": accept})
        assert (status, body) == (200, manifest.data)
    # One answer for the (tag, accepted types) pair, one copy of the bytes; the
    # target itself is cached apart.
    assert len(cache) == 2
    assert cache.get(("manifest-bytes", manifest.digest)) == manifest.data


async def test_bytes_are_shared_across_repositories_holding_one_manifest(
        client: Client) -> None:
    def fill(session: Session) -> Stored:
        manifest = add_manifest(session, image("shared"))
        for name in ("one", "two"):
            add_repository(session, name)
            set_version(session, name, {"v1": manifest})
        return manifest
    manifest = await write(client, fill)
    for name in ("one", "two"):
        status, _, body = await fetch(client, f"/v2/{name}/manifests/v1")
        assert (status, body) == (200, manifest.data)
    cache = client.app[STATE].lookups
    bytes_entries = [cache.get(("manifest-bytes", manifest.digest))]
    assert bytes_entries == [manifest.data]
    assert len(cache) == 3  # two (repository, tag) answers, one copy of the bytes


async def test_manifest_not_in_the_served_version_is_unknown(client: Client) -> None:
    def fill(session: Session) -> tuple[Stored, Stored]:
        add_repository(session, "app")
        old = add_manifest(session, image("old"))
        new = add_manifest(session, image("new"))
        set_version(session, "app", {"v1": old})
        set_version(session, "app", {"v1": new})
        return old, new
    old, new = await write(client, fill)
    status, _, body = await fetch(client, f"/v2/app/manifests/{old.digest}")
    assert (status, error_code(body)) == (404, "MANIFEST_UNKNOWN")
    status, _, body = await fetch(client, "/v2/app/manifests/v1")
    assert (status, body) == (200, new.data)


async def test_a_new_repository_with_a_deleted_ones_id_serves_none_of_its_answers(
        client: Client) -> None:
    """SQLite reuses the highest deleted id: the cache must not mistake one for the other."""
    def first(session: Session) -> tuple[int, Stored]:
        repository = add_repository(session, "app")
        manifest = add_manifest(session, image("first"))
        set_version(session, "app", {"v1": manifest})
        return repository.id, manifest
    first_id, old = await write(client, first)
    for ref in ("v1", old.digest):
        assert (await fetch(client, f"/v2/app/manifests/{ref}"))[0] == 200

    def replace(session: Session) -> tuple[int, Stored]:
        session.delete(session.get_one(Repository, first_id))
        session.flush()
        repository = add_repository(session, "app")
        manifest = add_manifest(session, image("second"))
        set_version(session, "app", {"other": manifest})
        return repository.id, manifest
    second_id, new = await write(client, replace)
    assert second_id == first_id  # the case that leaked
    client.app[STATE].lookups.invalidate_targets()  # as the API's middleware does

    status, _, body = await fetch(client, f"/v2/app/manifests/{old.digest}")
    assert (status, error_code(body)) == (404, "MANIFEST_UNKNOWN")
    status, _, body = await fetch(client, "/v2/app/manifests/v1")
    assert (status, error_code(body)) == (404, "MANIFEST_UNKNOWN")
    status, _, body = await fetch(client, "/v2/app/manifests/other")
    assert (status, body) == (200, new.data)


async def test_a_target_read_before_a_delete_finds_nothing_of_the_next_repository(
        client: Client) -> None:
    """Another process's cached target lives up to the re-read interval: it must not
    lead to the content of a repository that took the deleted one's id."""
    def first(session: Session) -> int:
        repository = add_repository(session, "old")
        set_version(session, "old", {"v1": add_manifest(session, image("old"))})
        return repository.id
    old_id = await write(client, first)
    assert (await fetch(client, "/v2/old/manifests/v1"))[0] == 200  # target cached

    def replace(session: Session) -> tuple[int, Stored]:
        session.delete(session.get_one(Repository, old_id))
        session.flush()
        repository = add_repository(session, "new")
        manifest = add_manifest(session, image("new"))
        set_version(session, "new", {"v2": manifest})
        return repository.id, manifest
    new_id, new = await write(client, replace)  # no invalidation: as if in another process
    assert new_id == old_id
    # (What the old target had cached about the old repository may still be served
    # for up to the interval: that is the contract, and it is no leak.)
    for path in ("/v2/old/manifests/v2", f"/v2/old/manifests/{new.digest}"):
        status, _, body = await fetch(client, path)
        assert (status, error_code(body)) == (404, "MANIFEST_UNKNOWN"), path
    status, _, body = await fetch(client, "/v2/old/tags/list")
    assert (status, json.loads(body)["tags"]) == (200, [])
    assert (await fetch(client, "/v2/new/manifests/v2"))[2] == new.data


async def test_pinned_distribution_serves_its_version(client: Client) -> None:
    def fill(session: Session) -> tuple[Stored, Stored]:
        add_repository(session, "app")
        old = add_manifest(session, image("old"))
        new = add_manifest(session, image("new"))
        set_version(session, "app", {"v1": old})
        set_version(session, "app", {"v1": new})
        pinned = session.scalars(select(RepositoryVersion).where(
            RepositoryVersion.number == 1)).one()
        session.add(Distribution(name="pinned", base_path="pinned",
                                 repository_version_id=pinned.id))
        return old, new
    old, new = await write(client, fill)
    assert (await fetch(client, "/v2/pinned/manifests/v1"))[2] == old.data
    assert (await fetch(client, "/v2/app/manifests/v1"))[2] == new.data


async def test_non_json_manifest_is_served_as_stored(client: Client) -> None:
    def fill(session: Session) -> Stored:
        add_repository(session, "odd")
        manifest = add_manifest(session, b"\x00\xffnot json", "application/x-opaque")
        set_version(session, "odd", {"v1": manifest})
        return manifest
    manifest = await write(client, fill)
    status, headers, body = await fetch(client, "/v2/odd/manifests/v1")
    assert (status, body, headers["Content-Type"]) == (200, manifest.data,
                                                         "application/x-opaque")

