"""Where the observe layer keeps things on the app and on requests.

A leaf module, so that handlers in lower layers can mark a request
(`served_from`) without importing the rest of the observe package.
"""

from __future__ import annotations

from typing import Literal, Protocol

from aiohttp import web

from lazyreg.observe.metrics import Metrics

BlobSource = Literal["storage", "upstream"]


class Download(Protocol):
    """A body read from a download in flight."""

    @property
    def joined(self) -> bool:
        """Whether the reader joined the download rather than started it."""


METRICS = web.AppKey("lazyreg_metrics", Metrics)
BLOB_SOURCE = web.RequestKey("lazyreg_blob_source", str)
BLOB_DOWNLOAD: web.RequestKey[Download] = web.RequestKey("lazyreg_blob_download")


def served_from(request: web.Request, source: BlobSource,
                download: Download | None = None) -> None:
    """Say where a blob GET's body comes from: storage (a hit), or a download in flight.

    A reader of a download is counted as its miss or as a join when its headers
    go out (the download's first bytes came: it knows by then whether this
    process leads it, and which reader caused it).
    """
    request[BLOB_SOURCE] = source
    if download is not None:
        request[BLOB_DOWNLOAD] = download


def blob_source(request: web.Request) -> str | None:
    """"storage", "join", "upstream" (a miss), or None for a request that sent no blob."""
    source = request.get(BLOB_SOURCE)
    if source == "upstream":
        download = request.get(BLOB_DOWNLOAD)
        if download is not None and download.joined:
            return "join"
    return source
