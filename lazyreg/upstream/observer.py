"""What the upstream client reports about its traffic, to whoever counts it.

The client calls an `UpstreamObserver` once per HTTP request it sends (each
retry and each token request counts) and once per blob response with the
body bytes received; the application passes its metrics, tests pass nothing.
Kinds are a fixed set, read from the request path, so that no name or digest
becomes a label.
"""

from __future__ import annotations

import re
from typing import Protocol


class UpstreamObserver(Protocol):
    def upstream_request(self, kind: str, method: str, status: int | None) -> None:
        """One request sent; `status` None when no answer came (refused, reset, timeout)."""

    def upstream_blob_bytes(self, nbytes: int) -> None:
        """Body bytes received on one blob response."""


class Unobserved:
    def upstream_request(self, kind: str, method: str, status: int | None) -> None:
        pass

    def upstream_blob_bytes(self, nbytes: int) -> None:
        pass


UNOBSERVED = Unobserved()


_KIND = re.compile(r"/(?:(blobs|manifests|referrers)/[^/]+|(tags)/list|(_catalog))/?$")


def request_kind(path: str) -> str:
    """blob, manifest, tags, referrers, catalog, ping or other, from a /v2 path or URL.

    Read from the end of the path, so a repository named like `a/blobs/b` is no blob.
    """
    path = path.split("?", 1)[0]
    m = _KIND.search(path)
    if m is not None:
        found = m.group(1) or m.group(2) or m.group(3)
        return {"blobs": "blob", "manifests": "manifest", "_catalog": "catalog"}.get(found, found)
    if path.rstrip("/").endswith("/v2"):
        return "ping"
    return "other"
