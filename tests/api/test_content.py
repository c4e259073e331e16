"""content/, artifacts/ and status/: filters by repository version, stored or not."""

from __future__ import annotations

import pytest

import lazyreg
from tests.api.conftest import Client, digest_of, get, post, seed, store


@pytest.fixture
async def alpine(client: Client) -> str:
    """Version 1: tags a (base, app) and b (base); version 2: tag c (base, extra)."""
    await post(client, "repositories/", {"name": "alpine"})
    await seed(client, "alpine", {"a": ["base", "app"], "b": ["base"]})
    await seed(client, "alpine", {"c": ["base", "extra"]})
    await store(client, ["base"])
    await store(client, ["manifest:base,extra"], kind="manifest")
    return "alpine"


async def test_tags_of_latest_and_of_a_version(client: Client, alpine: str) -> None:
    latest = await get(client, "content/tags/?repository=alpine")
    assert latest["count"] == 1
    assert latest["results"] == [{"name": "c", "digest": digest_of("manifest:base,extra"),
                                  "media_type": "application/vnd.oci.image.manifest.v1+json"}]
    one = await get(client, "content/tags/?repository=alpine&version=1")
    assert [t["name"] for t in one["results"]] == ["a", "b"]
    assert (await get(client, "content/tags/?repository=alpine&version=0"))["count"] == 0
    assert (await get(client, "content/tags/"))["count"] == 3
    assert (await get(client, "content/tags/?name=b"))["count"] == 1


async def test_manifests_say_whether_stored(client: Client, alpine: str) -> None:
    latest = await get(client, "content/manifests/?repository=alpine")
    assert latest["results"] == [{"digest": digest_of("manifest:base,extra"),
                                  "media_type": "application/vnd.oci.image.manifest.v1+json",
                                  "size": 102, "is_list": False, "stored": True}]
    everything = await get(client, "content/manifests/")
    assert everything["count"] == 3
    assert (await get(client, "content/manifests/?stored=false"))["count"] == 2
    found = await get(client, f"content/manifests/?digest={digest_of('manifest:base')}")
    assert found["count"] == 1
    assert found["results"][0]["stored"] is False


async def test_blobs_say_whether_stored(client: Client, alpine: str) -> None:
    blobs = await get(client, "content/blobs/?repository=alpine&version=1")
    by_digest = {b["digest"]: b for b in blobs["results"]}
    assert set(by_digest) == {digest_of("base"), digest_of("app")}
    assert by_digest[digest_of("base")] == {
        "digest": digest_of("base"), "size": 40,
        "media_type": "application/vnd.oci.image.layer.v1.tar", "stored": True,
        "artifact": {"digest": digest_of("base"), "size": 40, "kind": "layer",
                     "location": "/storage/base"},
        "sources": []}
    assert by_digest[digest_of("app")]["stored"] is False
    assert by_digest[digest_of("app")]["artifact"] is None
    assert (await get(client, "content/blobs/"))["count"] == 3
    assert (await get(client, "content/blobs/?stored=true"))["count"] == 1
    only = await get(client, f"content/blobs/?digest={digest_of('extra')}")
    assert [b["digest"] for b in only["results"]] == [digest_of("extra")]


@pytest.mark.parametrize(("query", "field", "status"), [
    ("repository=nope", "repository", 400),
    ("repository=alpine&version=3", "version", 400),
    ("repository=alpine&version=-1", "version", 400),
    ("repository=alpine&version=x", "version", 400),
    ("version=1", "version", 400),
    ("stored=maybe", "stored", 400),
])
async def test_bad_filters(client: Client, alpine: str, query: str, field: str,
                           status: int) -> None:
    for kind in ("tags", "manifests", "blobs"):
        if field == "stored" and kind == "tags":
            continue
        error = await get(client, f"content/{kind}/?{query}", status=status)
        assert error["field"] == field


async def test_artifacts_with_summary(client: Client, alpine: str) -> None:
    await store(client, ["cfg"], kind="config")
    listed = await get(client, "artifacts/")
    assert listed["count"] == 3
    assert {a["kind"] for a in listed["results"]} == {"layer", "manifest", "config"}
    assert set(listed["results"][0]) == {"digest", "size", "kind", "location", "created"}
    assert listed["summary"] == {
        "count": 3, "bytes": 40 + 190 + 30,
        "by_kind": {"manifest": {"count": 1, "bytes": 190}, "config": {"count": 1, "bytes": 30},
                    "layer": {"count": 1, "bytes": 40}}}
    layers = await get(client, "artifacts/?kind=layer&count")
    assert layers["count"] == 1
    assert layers["summary"] == {"count": 1, "bytes": 40,
                                 "by_kind": {"layer": {"count": 1, "bytes": 40}}}
    empty = await get(client, "artifacts/?kind=layer&offset=5")
    assert empty["results"] == []
    assert empty["summary"]["count"] == 1


async def test_status(client: Client, alpine: str) -> None:
    await post(client, "distributions/", {"name": "d", "base_path": "d", "repository": "alpine"})
    status = await get(client, "status/")
    assert status["version"] == lazyreg.__version__
    assert status["database"] == "sqlite"
    assert status["storage"]["path"].endswith("storage")
    assert status["storage"]["free_bytes"] > 0
    assert status["counts"] == {"remotes": 0, "repositories": 1, "distributions": 1,
                                "tasks_running": 0}
    assert status["artifacts"]["count"] == 2
    assert status["artifacts"]["by_kind"]["layer"] == {"count": 1, "bytes": 40}
