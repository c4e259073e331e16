"""Conditional requests: `If-None-Match` against a strong `ETag: "<digest>"`.

Content is addressed by its digest, so the digest is a strong validator
whether or not the bytes are stored: a match answers 304 before anything is
read or fetched.
"""

from __future__ import annotations


def etag_of(digest: str) -> str:
    return f'"{digest}"'


def none_match(header: str | None, etag: str) -> bool:
    """Whether `If-None-Match` names this ETag (weak comparison, as RFC 9110 says) or is `*`."""
    if not header:
        return False
    for item in header.split(","):
        tag = item.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False
