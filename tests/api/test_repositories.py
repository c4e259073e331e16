"""repositories/, their versions, and starting a sync."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from tests.api.conftest import Client, delete, get, patch, post, remote_body, seed


async def test_a_new_repository_has_an_empty_version_zero(client: Client) -> None:
    created = await post(client, "repositories/", {"name": "alpine", "description": "mirror"})
    assert created == {"name": "alpine", "description": "mirror", "latest_version": 0,
                       "retain_versions": None, "created": created["created"],
                       "versions_href": "/api/v1/repositories/alpine/versions/"}
    versions = await get(client, "repositories/alpine/versions/")
    assert versions["count"] == 1
    zero = {"tags": 0, "manifests": 0, "blobs": 0}
    assert versions["results"][0] == {"number": 0, "created": versions["results"][0]["created"],
                                      "content_counts": zero, "added": zero, "removed": zero}
    assert await get(client, "repositories/alpine/versions/0/") == versions["results"][0]


async def test_list_show_update_delete(client: Client) -> None:
    await post(client, "repositories/", {"name": "b"})
    await post(client, "repositories/", {"name": "a"})
    listed = await get(client, "repositories/")
    assert [r["name"] for r in listed["results"]] == ["a", "b"]
    assert (await get(client, "repositories/a/"))["description"] == ""
    changed = await patch(client, "repositories/a/", {"description": "first"})
    assert changed["description"] == "first"
    renamed = await patch(client, "repositories/a/", {"name": "c"})
    assert renamed["versions_href"] == "/api/v1/repositories/c/versions/"
    await patch(client, "repositories/c/", {"name": "b"}, status=409)
    await delete(client, "repositories/c/")
    await get(client, "repositories/c/", status=404)
    await get(client, "repositories/c/versions/", status=404)
    assert (await get(client, "repositories/"))["count"] == 1


async def test_duplicate_and_invalid_names(client: Client) -> None:
    await post(client, "repositories/", {"name": "alpine"})
    assert (await post(client, "repositories/", {"name": "alpine"}, 409))["field"] == "name"
    for bad in ("", "a b", "a//b", "/a", "a/", "a/-b", "x" * 256, 7):
        assert (await post(client, "repositories/", {"name": bad}, 400))["field"] == "name"
    assert (await post(client, "repositories/", {}, 400))["field"] == "name"


async def test_versions_newest_first_with_counts(client: Client) -> None:
    await post(client, "repositories/", {"name": "alpine"})
    assert await seed(client, "alpine", {"3.19": ["base", "app"]}) == 1
    assert await seed(client, "alpine", {"3.20": ["base", "new"]}) == 2
    assert (await get(client, "repositories/alpine/"))["latest_version"] == 2
    versions = await get(client, "repositories/alpine/versions/")
    assert [v["number"] for v in versions["results"]] == [2, 1, 0]
    two = versions["results"][0]
    assert two["content_counts"] == {"tags": 1, "manifests": 1, "blobs": 2}
    assert two["added"] == {"tags": 1, "manifests": 1, "blobs": 1}
    assert two["removed"] == {"tags": 1, "manifests": 1, "blobs": 1}
    await get(client, "repositories/alpine/versions/3/", status=404)
    for bad in ("x", "%C2%B2", "-1", "1_0", "12345678901234567890"):
        # "²".isdigit() is True and int("1_0") == 10: neither is a version number.
        error = await get(client, f"repositories/alpine/versions/{bad}/", status=400)
        assert error["field"] == "number", error
    await get(client, "repositories/nope/versions/0/", status=404)


async def test_deleting_a_repository_deletes_its_distributions(client: Client) -> None:
    await post(client, "repositories/", {"name": "alpine"})
    await post(client, "distributions/", {"name": "d", "base_path": "alpine",
                                          "repository": "alpine"})
    await post(client, "distributions/", {"name": "pinned", "base_path": "pinned",
                                          "repository": "alpine", "repository_version": 0})
    await delete(client, "repositories/alpine/")
    assert (await get(client, "distributions/"))["count"] == 0


async def test_sync_of_an_unknown_remote_names_the_field(client: Client) -> None:
    await post(client, "repositories/", {"name": "alpine"})
    error = await post(client, "repositories/alpine/sync/", {"remote": "nope"}, status=400)
    assert error == {"detail": "remote 'nope' not found", "field": "remote"}
    error = await post(client, "repositories/alpine/sync/", {}, status=400)
    assert error["field"] == "remote"
    error = await post(client, "repositories/alpine/sync/", {"remote": "x", "mirror": "perhaps"},
                       status=400)
    assert error["field"] == "mirror"
    await post(client, "remotes/", remote_body())
    await post(client, "repositories/nope/sync/", {"remote": "hub"}, status=404)
    assert (await get(client, "tasks/"))["count"] == 0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_sync_answers_202_with_the_task(client: Client) -> None:
    """Against an upstream that refuses connections: the task is recorded, then fails."""
    await post(client, "repositories/", {"name": "alpine"})
    await post(client, "remotes/", remote_body(url=f"http://127.0.0.1:{closed_port()}"))
    task = await post(client, "repositories/alpine/sync/", {"remote": "hub", "mirror": True},
                      status=202)
    assert task["kind"] == "sync"
    assert task["state"] in ("waiting", "running")
    assert task["params"] == {"repository": "alpine", "remote": "hub", "mirror": True}
    assert set(task) == {"id", "kind", "state", "params", "progress", "error", "created",
                         "started", "finished", "created_resources", "warnings"}
    final: dict[str, Any] = task
    for _ in range(200):
        final = await get(client, f"tasks/{task['id']}/")
        if final["finished"]:
            break
        await asyncio.sleep(0.05)
    assert final["state"] == "failed"
    assert final["error"]
    assert final["started"] and final["finished"]
    assert (await get(client, "repositories/alpine/"))["latest_version"] == 0
    assert (await get(client, "tasks/?state=failed"))["count"] == 1
    assert (await get(client, "tasks/?state=running"))["count"] == 0


async def test_tasks_404_and_bad_state_filter(client: Client) -> None:
    assert (await get(client, "tasks/nope/", status=404))["detail"] == "task 'nope' not found"
    assert (await get(client, "tasks/?state=sleeping", status=400))["field"] == "state"


@pytest.mark.parametrize("path", ["repositories/nope/", "remotes/nope/", "distributions/nope/"])
async def test_unknown_resources_are_404(client: Client, path: str) -> None:
    error = await get(client, path, status=404)
    assert error["detail"].endswith("'nope' not found")
    await delete(client, path, status=404)
