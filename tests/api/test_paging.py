"""?limit=&offset=, next/previous links, the envelope of every list."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from tests.api.conftest import API, Client, get, post, remote_body, seed


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


async def test_walk_pages_with_next_and_previous(client: Client) -> None:
    for i in range(7):
        await post(client, "remotes/", remote_body(f"r{i}"))
    first = await get(client, "remotes/?limit=3")
    assert first["count"] == 7
    assert [r["name"] for r in first["results"]] == ["r0", "r1", "r2"]
    assert first["previous"] is None
    assert first["next"].startswith("http://")
    assert query_of(first["next"]) == {"limit": ["3"], "offset": ["3"]}

    names: list[str] = []
    page = first
    while True:
        names += [r["name"] for r in page["results"]]
        if page["next"] is None:
            break
        offset = int(query_of(page["next"])["offset"][0])
        # The links are absolute URLs, followed as they are.
        page = await (await client.session.get(page["next"])).json()
        assert query_of(page["previous"]) == {"limit": ["3"], "offset": [str(offset - 3)]}
    assert names == [f"r{i}" for i in range(7)]
    assert len(page["results"]) == 1

    back = await (await client.session.get(page["previous"])).json()
    assert [r["name"] for r in back["results"]] == ["r3", "r4", "r5"]


async def test_offset_past_the_end_and_previous_clamped(client: Client) -> None:
    for i in range(3):
        await post(client, "repositories/", {"name": f"r{i}"})
    beyond = await get(client, "repositories/?limit=2&offset=10")
    assert beyond["count"] == 3
    assert beyond["results"] == []
    assert beyond["next"] is None
    assert query_of(beyond["previous"]) == {"limit": ["2"], "offset": ["8"]}
    middle = await get(client, "repositories/?limit=2&offset=1")
    assert query_of(middle["previous"]) == {"limit": ["2"], "offset": ["0"]}


async def test_links_keep_the_filters(client: Client) -> None:
    await post(client, "repositories/", {"name": "alpine"})
    for tag in "abc":
        await seed(client, "alpine", {tag: [tag]})
    page = await get(client, "content/blobs/?repository=alpine&version=2&limit=1&offset=1")
    assert page["count"] == 1
    page = await get(client, "content/tags/?repository=alpine&limit=1")
    assert page["count"] == 1
    assert page["next"] is None
    everything = await get(client, "content/tags/?limit=1&name=b")
    assert everything["count"] == 1
    blobs = await get(client, "content/blobs/?limit=1")
    assert blobs["count"] == 3
    assert query_of(blobs["next"]) == {"limit": ["1"], "offset": ["1"]}
    filtered = await get(client, "content/manifests/?stored=false&limit=2")
    assert query_of(filtered["next"]) == {"stored": ["false"], "limit": ["2"], "offset": ["2"]}


async def test_default_and_maximum_limit(client: Client) -> None:
    empty = await get(client, "distributions/")
    assert empty == {"count": 0, "next": None, "previous": None, "results": []}
    capped = await get(client, "remotes/?limit=5000")
    assert capped["count"] == 0


@pytest.mark.parametrize("query", ["limit=0", "limit=-1", "limit=ten", "offset=-1", "offset=x"])
async def test_bad_paging_names_the_parameter(client: Client, query: str) -> None:
    error = await get(client, f"remotes/?{query}", status=400)
    assert error["field"] == query.split("=")[0]


@pytest.mark.parametrize("path", ["remotes/", "repositories/", "distributions/",
                                  "content/tags/", "content/manifests/", "content/blobs/",
                                  "artifacts/", "tasks/"])
async def test_every_list_is_paged(client: Client, path: str) -> None:
    page = await get(client, f"{path}?limit=1")
    assert {"count", "next", "previous", "results"} <= set(page)


async def test_unknown_api_path_is_a_json_404(client: Client) -> None:
    resp = await client.get(f"{API}/nothing-here/")
    assert resp.status == 404
    assert (await resp.json())["detail"]


@pytest.mark.parametrize("query", [
    "offset=2147483648", "offset=9223372036854775808", "offset=" + "9" * 5000,
    "limit=9223372036854775808", "offset=%D9%A1", "offset=1_0", "offset=+1", "offset=%201",
    "offset=1&offset=2",
])
async def test_out_of_bounds_paging_names_the_parameter(client: Client, query: str) -> None:
    error = await get(client, f"tasks/?{query}", status=400)
    assert error["field"] == query.split("=")[0], error
    assert len(error["detail"]) < 100, error  # a 5000-digit number is not echoed back


async def test_largest_offset_and_limit_are_served(client: Client) -> None:
    page = await get(client, "remotes/?offset=2147483647&limit=2147483647")
    assert page == {"count": 0, "next": None, "previous": page["previous"], "results": []}
    assert "limit=1000" in page["previous"]  # the capped page size
