"""Reading the upstream's tag list into what a sync needs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from lazyreg.sync.tags import TooManyTags, list_tags

SIG = "sha256-" + "a" * 64 + ".sig"


class Pages:
    def __init__(self, *pages: list[Any]) -> None:
        self.pages = pages

    async def iter_tag_pages(self, name: str) -> AsyncIterator[list[Any]]:
        for page in self.pages:
            yield page


async def test_selected_invalid_and_referrer_tags() -> None:
    client: Any = Pages(["v1", "v2", "../x", SIG], ["v1.1", "bad\n", 7, "v2"])
    listing = await list_tags(client, "a", ["v*", "*x", "bad*"], None, 100, True)
    assert listing.selected == ["v1", "v2", "v1.1"]
    assert listing.invalid == ["'../x'", "'7'", "'bad\\n'"]
    assert listing.referrer_tags == {SIG}  # kept though the globs leave it out
    assert listing.listed == 8


async def test_more_tags_than_max_tags_fails_clearly() -> None:
    client: Any = Pages([f"t{i}" for i in range(60)], [f"u{i}" for i in range(60)])
    with pytest.raises(TooManyTags, match=r"more than 100 tags for a .*max_tags"):
        await list_tags(client, "a", None, None, 100, False)


async def test_a_long_hostile_tag_is_shortened_in_messages() -> None:
    client: Any = Pages(["x" * 10_000 + "/"])
    listing = await list_tags(client, "a", None, None, 100, False)
    assert len(listing.invalid[0]) < 110
