"""tags/list and _catalog: pages read in the database, n capped, odd n and last refused cleanly."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.orm import Session

from lazyreg.registry import listing
from tests.registry.conftest import (
    Client,
    add_manifest,
    add_repository,
    error_code,
    fetch,
    image,
    set_version,
    write,
)


def short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 30 else f"{text[:20]}...({len(text)})"


TAGS = [f"t{i:03d}" for i in range(25)] + ["Z", "a-b", "latest", "v1.0", "v1.10", "v1.9"]


@pytest.fixture
async def tagged(client: Client) -> Client:
    def fill(session: Session) -> None:
        add_repository(session, "app")
        manifests = [add_manifest(session, image(f"m{i}")) for i in range(3)]
        set_version(session, "app", {tag: manifests[i % 3] for i, tag in enumerate(TAGS)})
    await write(client, fill)
    return client


async def tags(client: Client, query: str = "") -> tuple[list[str], str | None]:
    status, headers, body = await fetch(client, f"/v2/app/tags/list{query}")
    assert status == 200, body
    data = json.loads(body)
    assert data["name"] == "app"
    return data["tags"], headers.get("Link")


async def test_all_tags_in_bytewise_order(tagged: Client) -> None:
    assert await tags(tagged) == (sorted(TAGS), None)


async def test_paging_with_n_and_last_walks_every_tag_once(tagged: Client) -> None:
    seen: list[str] = []
    query = "?n=7"
    for _ in range(10):
        page, link = await tags(tagged, query)
        assert len(page) <= 7
        seen += page
        if link is None:
            break
        assert link.endswith('>; rel="next"')
        query = "?" + link[link.index("?") + 1:link.index(">")]
    assert seen == sorted(TAGS)


ODD_BUT_VALID = [
    ("?n=0", []),
    ("?last=v1.0", ["v1.10", "v1.9"]),
    ("?last=zzz", []),
    ("?last=", sorted(TAGS)),
    ("?last=%C3%A9", []),  # é sorts after every ASCII name
    ("?last=" + "a" * 1000, sorted(t for t in TAGS if t > "a" * 1000)),
    ("?n=2&last=v1.0", ["v1.10", "v1.9"]),
    ("?n=00003", sorted(TAGS)[:3]),
    ("?n=99999999999999999999999999", sorted(TAGS)),
    ("?n=" + "9" * 5000, sorted(TAGS)),
]


async def test_odd_but_valid_paging(tagged: Client) -> None:
    for query, expected in ODD_BUT_VALID:
        page, _ = await tags(tagged, query)
        assert page == expected, short(query)


async def test_bad_n_is_a_400(tagged: Client) -> None:
    for query in ("?n=-1", "?n=abc", "?n=1.5", "?n=%C2%B2", "?n=", "?n=+3", "?n=0x10"):
        for path in ("/v2/app/tags/list", "/v2/_catalog"):
            status, _, body = await fetch(tagged, path + query)
            assert (status, error_code(body)) == (400, "PAGINATION_NUMBER_INVALID"), \
                (path, query)


async def test_bad_last_is_a_400(tagged: Client) -> None:
    for query in ("?last=a%00b", "?last=%0a", "?last=" + "x" * 2000):
        for path in ("/v2/app/tags/list", "/v2/_catalog"):
            status, _, body = await fetch(tagged, path + query)
            assert status == 400, (path, short(query), body)
            assert "last" in json.loads(body)["errors"][0]["message"]


async def test_n_is_capped_and_a_page_without_n_is_bounded(
        tagged: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listing, "MAX_PAGE", 4)
    page, link = await tags(tagged)
    assert page == sorted(TAGS)[:4]
    assert link == f'</v2/app/tags/list?n=4&last={sorted(TAGS)[3]}>; rel="next"'
    page, link = await tags(tagged, "?n=1000")
    assert len(page) == 4 and link is not None


async def test_catalog_pages_in_the_database(client: Client) -> None:
    names = ["b/x", "a", "team/mirrors/alpine", "c-d", "a/b"]

    def fill(session: Session) -> None:
        for name in names:
            add_repository(session, name.replace("/", "-"), base_path=name)
    await write(client, fill)
    status, headers, body = await fetch(client, "/v2/_catalog?n=2")
    assert status == 200
    assert json.loads(body)["repositories"] == ["a", "a/b"]
    assert headers["Link"] == '</v2/_catalog?n=2&last=a%2Fb>; rel="next"'
    status, headers, body = await fetch(client, "/v2/_catalog?n=2&last=a/b")
    assert json.loads(body)["repositories"] == ["b/x", "c-d"]
    status, headers, body = await fetch(client, "/v2/_catalog?last=c-d")
    assert json.loads(body)["repositories"] == ["team/mirrors/alpine"]
    assert "Link" not in headers


async def test_tags_of_the_served_version_only(client: Client) -> None:
    def fill(session: Session) -> None:
        add_repository(session, "app")
        one, two = add_manifest(session, image("one")), add_manifest(session, image("two"))
        set_version(session, "app", {"old": one, "kept": one})
        set_version(session, "app", {"kept": one, "new": two})
    await write(client, fill)
    assert await tags(client) == (["kept", "new"], None)
