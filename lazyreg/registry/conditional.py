"""Conditional requests: the ETag of content named by its digest, and `If-None-Match`.

Content is addressed by its digest, so the digest is a strong validator
whether or not the bytes are stored: a match answers 304 before anything is
read or fetched.
"""

from __future__ import annotations

import re

from aiohttp import web

# One entity tag of a list: `*`, `"opaque"` or `W/"opaque"`.
_ETAG_RE = re.compile(r'\s*(?:(\*)|(?:W/)?"([^"]*)")\s*(?:,|$)')


def etag_of(digest: str) -> str:
    return f'"{digest}"'


def if_none_match(header: str | None, digest: str) -> bool:
    """Whether `If-None-Match: header` matches the content `digest` (weak comparison).

    Text that is not an entity tag is skipped: at worst the full answer goes out.
    """
    if not header:
        return False
    for match in _ETAG_RE.finditer(header):
        star, opaque = match.groups()
        if star or opaque == digest:
            return True
    return False


def not_modified(request: web.Request, digest: str) -> bool:
    return any(if_none_match(value, digest)
               for value in request.headers.getall("If-None-Match", []))
