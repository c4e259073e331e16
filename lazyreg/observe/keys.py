"""Where the observe layer keeps things on the app and on requests.

A leaf module, so that handlers in lower layers can mark a request
(`served_from`) without importing the rest of the observe package.
"""

from __future__ import annotations

from typing import Literal

from aiohttp import web

from lazyreg.observe.metrics import Metrics

BlobSource = Literal["storage", "upstream"]

METRICS = web.AppKey("lazyreg_metrics", Metrics)
BLOB_SOURCE = web.RequestKey("lazyreg_blob_source", str)


def served_from(request: web.Request, source: BlobSource) -> None:
    """Say where a blob GET's body comes from: counted as a hit (storage) or a miss."""
    request[BLOB_SOURCE] = source
