"""Versions deleted and retained, distributions refused a deleted version, reclaim and orphan
cleanup started as tasks, the cache in the status."""

from __future__ import annotations

from tests.api.conftest import Client, delete, get, patch, post, seed


async def _versions(client: Client, name: str) -> list[int]:
    return [v["number"] for v in (await get(client, f"repositories/{name}/versions/"))["results"]]


async def test_delete_a_version_but_not_the_latest_nor_a_pinned_one(client: Client) -> None:
    await post(client, "repositories/", {"name": "alpine"})
    for layers in (["base"], ["base", "app"], ["base", "new"]):
        await seed(client, "alpine", {"3": layers})
    await post(client, "distributions/", {"name": "old", "base_path": "old",
                                          "repository": "alpine", "repository_version": 1})
    before = {n: await get(client, f"repositories/alpine/versions/{n}/") for n in (1, 3)}

    latest = await (await client.delete("/api/v1/repositories/alpine/versions/3/")).json()
    assert "latest version" in latest["detail"]
    resp = await client.delete("/api/v1/repositories/alpine/versions/1/")
    assert resp.status == 409
    assert "distribution old" in (await resp.json())["detail"]
    await delete(client, "repositories/alpine/versions/9/", status=404)
    await delete(client, "repositories/nope/versions/1/", status=404)
    assert (await (await client.delete("/api/v1/repositories/alpine/versions/x/")).json()
            )["field"] == "number"

    await delete(client, "repositories/alpine/versions/0/")
    await delete(client, "repositories/alpine/versions/2/")
    assert await _versions(client, "alpine") == [3, 1]
    await get(client, "repositories/alpine/versions/2/", status=404)
    for n in (1, 3):
        assert await get(client, f"repositories/alpine/versions/{n}/") == before[n]


async def test_retain_versions_prunes_and_a_removed_version_cannot_be_pinned(
        client: Client) -> None:
    for bad in (0, -1, "2", 2.5, 2**40):
        body = {"name": "alpine", "retain_versions": bad}
        assert (await post(client, "repositories/", body, 400))["field"] == "retain_versions"
    created = await post(client, "repositories/", {"name": "alpine", "retain_versions": 3})
    assert created["retain_versions"] == 3
    for n in range(5):
        await seed(client, "alpine", {"3": [f"layer {n}"]})
    assert await _versions(client, "alpine") == [5, 4, 3]
    await post(client, "distributions/", {"name": "pinned", "base_path": "pinned",
                                          "repository": "alpine", "repository_version": 3})
    assert (await patch(client, "repositories/alpine/", {"retain_versions": 1})
            )["retain_versions"] == 1
    assert await _versions(client, "alpine") == [5, 3]  # 3 is pinned

    refused = await post(client, "distributions/", {"name": "d", "base_path": "d",
                                                    "repository": "alpine",
                                                    "repository_version": 4}, 400)
    assert refused["field"] == "repository_version"
    assert refused["detail"] == ("repository_version: repository 'alpine' has no version 4 any"
                                 " more (retain_versions keeps the newest 1); it has versions"
                                 " 3, 5")
    moved = await patch(client, "distributions/pinned/", {"repository_version": 2}, 400)
    assert "has no version 2 any more" in moved["detail"]
    assert (await get(client, "distributions/pinned/"))["repository_version"] == 3
    future = await post(client, "distributions/", {"name": "d", "base_path": "d",
                                                   "repository": "alpine",
                                                   "repository_version": 9}, 400)
    assert future["detail"].endswith("has no version 9: its latest is 5")
    assert (await patch(client, "repositories/alpine/", {"retain_versions": None})
            )["retain_versions"] is None


async def test_reclaim_and_orphan_cleanup_are_tasks(client: Client) -> None:
    await post(client, "repositories/alpine/reclaim/", {}, 404)
    await post(client, "repositories/", {"name": "alpine"})
    task = await post(client, "repositories/alpine/reclaim/", None, 202)
    assert (task["kind"], task["params"]) == ("reclaim", {"repository": "alpine"})
    for bad in ({"protection_time": -1}, {"protection_time": "1h"}, {"protection": 5}):
        await post(client, "orphans/cleanup/", bad, 400)
    task = await post(client, "orphans/cleanup/", None, 202)
    assert task["params"] == {"protection_time": 3600.0}
    task = await post(client, "orphans/cleanup/", {"protection_time": 0}, 202)
    assert task["params"] == {"protection_time": 0}
    cache = (await get(client, "status/"))["cache"]
    assert cache["max_bytes"] is None
    assert cache["evictable_bytes"] == 0 and cache["evicting"] is False


async def test_a_slashed_repository_name_reaches_reclaim_and_its_versions(
        client: Client) -> None:
    await post(client, "repositories/", {"name": "hub/library/alpine"})
    task = await post(client, "repositories/hub/library/alpine/reclaim/", None, 202)
    assert task["params"] == {"repository": "hub/library/alpine"}
    resp = await client.patch("/api/v1/repositories/hub/library/alpine/reclaim/", json={})
    assert resp.status == 405
    latest = await client.delete("/api/v1/repositories/hub/library/alpine/versions/0/")
    assert latest.status == 409
