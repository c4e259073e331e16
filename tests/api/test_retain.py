"""retain_versions: older versions pruned, the remaining ones unchanged, pinned ones kept."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from lazyreg.check import check
from lazyreg.db.models import RepositoryContent
from lazyreg.state import STATE
from tests.api.conftest import Client, database, get, patch, post, seed


async def _contents(client: Client, name: str, numbers: list[int]) -> dict[int, Any]:
    out = {}
    for n in numbers:
        tags = await get(client, f"content/tags/?repository={name}&version={n}&limit=1000")
        blobs = await get(client, f"content/blobs/?repository={name}&version={n}&limit=1000")
        out[n] = (sorted((t["name"], t["digest"]) for t in tags["results"]),
                  sorted(b["digest"] for b in blobs["results"]))
    return out


async def _rows(client: Client) -> int:
    return await database(client).read(
        lambda s: s.scalar(select(func.count()).select_from(RepositoryContent)) or 0)


async def test_retain_versions_prunes_and_keeps_the_rest_exact(client: Client) -> None:
    await post(client, "repositories/", {"name": "app"})
    # Tags come and go: each version adds and removes membership ranges.
    history = [{"a": ["base", "a1"]}, {"a": ["base", "a2"], "b": ["b1"]}, {"b": ["b1"]},
               {"b": ["b2"], "c": ["base", "c1"]}, {"c": ["base", "c1"], "d": ["d1"]},
               {"a": ["base", "a1"], "d": ["d1"]}]
    for images in history:
        await seed(client, "app", images)
    await post(client, "distributions/", {"name": "pin", "base_path": "pin",
                                          "repository": "app", "repository_version": 2})
    before = await _contents(client, "app", [2, 4, 5, 6])
    rows_before = await _rows(client)

    kept = await patch(client, "repositories/app/", {"retain_versions": 2})
    assert kept["retain_versions"] == 2 and kept["latest_version"] == 6
    versions = await get(client, "repositories/app/versions/")
    assert [v["number"] for v in versions["results"]] == [6, 5, 2]  # 2 is pinned
    assert await _contents(client, "app", [2, 5, 6]) == {n: before[n] for n in (2, 5, 6)}
    assert await _rows(client) < rows_before
    await get(client, "repositories/app/versions/4/", status=404)
    services = client.app[STATE].services
    assert (await check(services.db, services.store)).ok

    # New versions keep the window moving; the pinned one stays until unpinned.
    await seed(client, "app", {"e": ["e1"]})
    versions = await get(client, "repositories/app/versions/")
    assert [v["number"] for v in versions["results"]] == [7, 6, 2]
    await patch(client, "distributions/pin/", {"repository_version": None})
    await patch(client, "repositories/app/", {"retain_versions": 1})
    versions = await get(client, "repositories/app/versions/")
    assert [v["number"] for v in versions["results"]] == [7]
    tags = await get(client, "content/tags/?repository=app")
    assert [t["name"] for t in tags["results"]] == ["e"]
    assert (await check(services.db, services.store)).ok
    await patch(client, "repositories/app/", {"retain_versions": 0}, status=400)
