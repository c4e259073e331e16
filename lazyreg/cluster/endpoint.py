"""The internal endpoint: what a peer reads of a blob this server downloads or has stored.

    GET /_cluster/blobs/<digest>            its bytes (with Range), as they land
    GET /_cluster/blobs/<digest>/progress   {"state", "landed", "size"}, once more landed

Not a door into the registry:

- every request must be signed with the cluster's secret (`lazyreg.clusterauth`):
  401 otherwise, before anything is looked up;
- it serves only a blob that this process is downloading (or following) now, or
  that is stored: 404 for anything else, and never an upstream request or a
  database read of its own. It starts nothing;
- it answers only on the internal listener (`lazyreg.cluster.listener`), never on
  the public port, and only GET and HEAD.

A blob in flight is read the way a client of this node reads it: a body on its
`Growing` (`lazyreg.fetch.growing`), sent by `lazyreg.registry.send`. A progress
request waits at most PROGRESS_WAIT for more bytes than `after`, so that a peer
learns of new bytes at once with about one request a second while none come.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from lazyreg.clusterauth import HEADER, verify
from lazyreg.errors import RegistryError
from lazyreg.fetch import BlobBody, Fetcher, Growing, Phase, StoredBody
from lazyreg.registry.ranges import parse_range
from lazyreg.registry.send import send_body
from lazyreg.storage import is_supported
from lazyreg.storage.base import BlobStore

PROGRESS_WAIT = 1.0  # seconds a progress request waits for news
MAX_AFTER = 1 << 62  # `after` beyond any blob's size


@dataclass
class Node:
    """What the endpoint reads: this process's downloads and storage."""

    fetcher: Fetcher
    store: BlobStore
    secret: str
    send_timeout: float


NODE = web.AppKey("cluster_node", Node)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"detail": message}, status=status)


@web.middleware
async def peers_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """401 for a request not signed with the cluster's secret; errors as JSON."""
    node = request.app[NODE]
    if not verify(node.secret, request.headers.get(HEADER), request.method, request.path):
        return _error(401, f"the internal endpoint answers only peers: a {HEADER} header"
                      " signed with the cluster's secret is needed")
    if request.body_exists:
        return _error(413, "the internal endpoint is read-only: a request body is refused")
    try:
        return await handler(request)
    except RegistryError as exc:
        return _error(exc.status, exc.message)


def _digest(request: web.Request) -> str:
    digest = request.match_info["digest"]
    if not is_supported(digest):
        raise RegistryError("DIGEST_INVALID", f"invalid digest {digest[:200]!r}", status=400)
    return digest


def _landed(growing: Growing) -> int:
    """Bytes a body on it can have now: in the download's memory or in its file."""
    if growing.phase is Phase.VERIFIED:
        return growing.size
    return min(max(growing.landed, growing.received), growing.size)


async def blob(request: web.Request) -> web.StreamResponse:
    node, digest = request.app[NODE], _digest(request)
    growing = node.fetcher.in_flight(digest)
    body: BlobBody | None = growing.attach() if growing is not None else None
    if body is None:
        reader = await node.store.open(digest)
        if reader is None:
            raise RegistryError("BLOB_UNKNOWN", f"{digest} is neither stored nor being"
                                " downloaded here", status=404)
        body = StoredBody(digest, reader)
    try:
        span = parse_range(request.headers.get("Range"), body.size)
    except BaseException:
        body.close()
        raise
    headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
    if request.method == "HEAD":
        body.close()
        return web.Response(headers={**headers, "Content-Length": str(body.size)})
    return await send_body(request, body, span, headers, node.send_timeout)


async def progress(request: web.Request) -> web.Response:
    node, digest = request.app[NODE], _digest(request)
    raw = request.query.get("after", "-1")
    if not raw.lstrip("-").isdigit() or len(raw) > 20:
        return _error(400, "after: an integer")
    after = min(int(raw), MAX_AFTER)
    growing = node.fetcher.in_flight(digest)
    if growing is not None:
        try:
            async with asyncio.timeout(PROGRESS_WAIT):
                while growing.phase is Phase.RUNNING and not growing.closed \
                        and _landed(growing) <= after:
                    await growing.changed()
        except TimeoutError:
            pass
        return _progress(growing.phase.value, _landed(growing), growing.size)
    size = await node.store.stat(digest)
    if size is None:
        return _error(404, f"{digest} is neither stored nor being downloaded here")
    return _progress("stored", size, size)


def _progress(state: str, landed: int, size: int) -> web.Response:
    return web.Response(text=json.dumps({"state": state, "landed": landed, "size": size}),
                        content_type="application/json")


def internal_app(node: Node) -> web.Application:
    app = web.Application(middlewares=[peers_only], client_max_size=1024)
    app[NODE] = node
    app.router.add_get("/_cluster/blobs/{digest}", blob)  # HEAD too
    app.router.add_get("/_cluster/blobs/{digest}/progress", progress, allow_head=False)
    return app
