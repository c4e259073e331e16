"""If-None-Match against a blob's ETag."""

import pytest

from lazyreg.registry.conditional import etag_of, if_none_match

DIGEST = "sha256:" + "a" * 64
ETAG = etag_of(DIGEST)


@pytest.mark.parametrize(("header", "matches"), [
    (None, False), ("", False), (ETAG, True), (f"W/{ETAG}", True), ("*", True),
    (f'"sha256:{"b" * 64}", {ETAG}', True), (f'"sha256:{"b" * 64}"', False),
    (ETAG.strip('"'), False),  # an ETag is quoted
])
def test_none_match(header: str | None, matches: bool) -> None:
    assert if_none_match(header, DIGEST) is matches
