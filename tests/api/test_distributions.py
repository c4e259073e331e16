"""distributions/: latest or pinned version, unique base paths, validation."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Client, delete, get, patch, post, seed


@pytest.fixture
async def repository(client: Client) -> str:
    await post(client, "repositories/", {"name": "alpine"})
    await seed(client, "alpine", {"latest": ["base"]})
    return "alpine"


def dist(name: str = "alpine", base_path: str = "team/mirrors/alpine", **extra: Any
         ) -> dict[str, Any]:
    return {"name": name, "base_path": base_path, "repository": "alpine", **extra}


async def test_create_follows_the_latest_version(client: Client, repository: str) -> None:
    created = await post(client, "distributions/", dist())
    assert created == {"name": "alpine", "base_path": "team/mirrors/alpine",
                       "repository": "alpine", "repository_version": None, "private": False,
                       "readers": [], "anonymous_pull_through": True,
                       "pull_through": False, "remote": None,
                       "created": created["created"]}
    assert await get(client, "distributions/alpine/") == created
    assert (await get(client, "distributions/"))["results"] == [created]


async def test_pin_and_unpin(client: Client, repository: str) -> None:
    pinned = await post(client, "distributions/", dist(repository_version=1, private=True))
    assert pinned["repository_version"] == 1
    assert pinned["private"] is True
    repinned = await patch(client, "distributions/alpine/", {"repository_version": 0})
    assert repinned["repository_version"] == 0
    unpinned = await patch(client, "distributions/alpine/", {"repository_version": None})
    assert unpinned["repository_version"] is None
    assert unpinned["repository"] == "alpine"
    assert unpinned["private"] is True


async def test_update_and_delete(client: Client, repository: str) -> None:
    await post(client, "repositories/", {"name": "other"})
    await post(client, "distributions/", dist())
    moved = await patch(client, "distributions/alpine/",
                        {"base_path": "alpine", "repository": "other"})
    assert (moved["base_path"], moved["repository"]) == ("alpine", "other")
    await delete(client, "distributions/alpine/")
    await get(client, "distributions/alpine/", status=404)


async def test_base_path_and_name_are_unique(client: Client, repository: str) -> None:
    await post(client, "distributions/", dist())
    error = await post(client, "distributions/", dist(name="other"), status=409)
    assert error["field"] == "base_path"
    assert "'alpine'" in error["detail"]
    error = await post(client, "distributions/", dist(base_path="elsewhere"), status=409)
    assert error["field"] == "name"
    await post(client, "distributions/", dist(name="second", base_path="elsewhere"))
    await patch(client, "distributions/second/", {"base_path": "team/mirrors/alpine"},
                status=409)


@pytest.mark.parametrize("base_path", ["Team/alpine", "/alpine", "alpine/", "a//b", "a b",
                                       "", "a" * 256])
async def test_bad_base_path(client: Client, repository: str, base_path: str) -> None:
    error = await post(client, "distributions/", dist(base_path=base_path), status=400)
    assert error["field"] == "base_path"


async def test_unknown_repository(client: Client, repository: str) -> None:
    error = await post(client, "distributions/", {**dist(), "repository": "nope"}, status=400)
    assert error == {"detail": "repository 'nope' not found", "field": "repository"}
    error = await post(client, "distributions/", {"name": "x", "base_path": "x"}, status=400)
    assert error["field"] == "repository"


async def test_pinned_version_must_exist(client: Client, repository: str) -> None:
    error = await post(client, "distributions/", dist(repository_version=2), status=400)
    assert error["field"] == "repository_version"
    assert error["detail"] == ("repository_version: repository 'alpine' has no version 2:"
                               " its latest is 1")
    error = await post(client, "distributions/", dist(repository_version=-1), status=400)
    assert error["field"] == "repository_version"
    await post(client, "distributions/", dist())
    await patch(client, "distributions/alpine/", {"repository_version": 9}, status=400)
    assert (await get(client, "distributions/alpine/"))["repository_version"] is None


async def test_bad_name(client: Client, repository: str) -> None:
    error = await post(client, "distributions/", dist(name="no/slash"), status=400)
    assert error["field"] == "name"
