"""`GET|HEAD /v2/<name>/blobs/<digest>`: from storage with sendfile, or lazily from upstream.

A blob is served only if it belongs to the distribution's repository version.
A stored blob goes out with aiohttp's FileResponse (sendfile, Range, 416). A
blob not stored joins or starts the single download of it and streams the
staging file as it grows; see `lazyreg.fetch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from typing import BinaryIO

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from lazyreg.db import content as q
from lazyreg.db.models import Blob
from lazyreg.errors import RegistryError
from lazyreg.fetch import Download
from lazyreg.observe.keys import served_from
from lazyreg.oci.digest import DIGEST_RE
from lazyreg.registry.listing import API_HEADERS
from lazyreg.registry.ranges import parse_range
from lazyreg.registry.resolve import Target, target_of
from lazyreg.state import AppState, state
from lazyreg.upstream.errors import AuthError, TooManyRequests, UpstreamError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlobInfo:
    blob_id: int
    size: int


def _lookup(session: Session, target: Target, name: str, digest: str) -> BlobInfo:
    row = session.execute(
        select(Blob.id, Blob.size)
        .where(Blob.digest == digest,
               Blob.id.in_(q.in_version(target.repository_id, target.version)))).first()
    if row is None:
        raise RegistryError("BLOB_UNKNOWN", f"blob {digest} unknown to repository {name!r}",
                            detail={"digest": digest})
    return BlobInfo(row[0], row[1])


def _headers(digest: str, size: int | None = None) -> dict[str, str]:
    headers = {**API_HEADERS, "Docker-Content-Digest": digest, "ETag": f'"{digest}"',
               "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
    if size is not None:
        headers["Content-Length"] = str(size)
    return headers


async def get_blob(request: web.Request) -> web.StreamResponse:
    name, digest = request.match_info["name"], request.match_info["digest"]
    if not DIGEST_RE.match(digest):
        raise RegistryError("DIGEST_INVALID", f"invalid digest {digest!r}")
    app = state(request)
    target = await target_of(app, name)
    key = ("blob", target, digest)  # the Target names its repository by uid, never reused
    info: BlobInfo | None = app.lookups.get(key)
    if info is None:
        info = await app.services.db.read(lambda s: _lookup(s, target, name, digest))
        app.lookups.put(key, info)
    # A file under its digest is verified content (it is renamed there only
    # after its digest matched), so its presence is what "stored" means here.
    path = app.services.store.local_path(digest)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        size = None
    if size is not None:
        if request.method == "HEAD":  # no need to open the file to say how big it is
            return web.Response(status=200, headers=_headers(digest, size))
        served_from(request, "storage")
        return web.FileResponse(path, headers=_headers(digest))
    if request.method == "HEAD":
        return web.Response(status=200, headers=_headers(digest, info.size))
    return await _serve_lazily(request, app, info, digest)


async def _attach(app: AppState, info: BlobInfo, digest: str) -> tuple[Download, int] | None:
    """Join (or start) the download of a blob: the download and a descriptor to read it.

    None when the blob landed in storage meanwhile.
    """
    for _ in range(3):
        download = app.fetcher.in_flight(digest)
        if download is None:
            found = await app.services.db.read(
                lambda s: app.fetcher.sources_for(s, info.blob_id))
            if not found.usable:
                raise RegistryError("BLOB_UNKNOWN", f"blob {digest} is not stored and {found.why}",
                                    status=503 if found.cooling else 404)
            keep = found.usable[0].policy != "streamed"
            download = await app.fetcher.join(digest, info.size, found.usable, keep=keep,
                                              kind="layer")
            if download is None:
                return None
        fd = download.open()
        if fd is not None:
            return download, fd
        # It finished while we awaited: stored, failed, or relayed and gone.
        if app.services.store.exists(digest):
            return None
        if download.error is not None and isinstance(download.error, UpstreamError):
            raise _as_registry_error(download.error)
    raise RegistryError("UNAVAILABLE", f"could not join a download of {digest}", status=503)


async def _serve_lazily(request: web.Request, app: AppState, info: BlobInfo,
                        digest: str) -> web.StreamResponse:
    span = parse_range(request.headers.get("Range"), info.size)  # 416 before any fetch
    attached = await _attach(app, info, digest)
    if attached is None:  # stored meanwhile, by this process or another
        served_from(request, "storage")
        return web.FileResponse(app.services.store.local_path(digest), headers=_headers(digest))
    served_from(request, "upstream")
    download, fd = attached
    start, end = span or (0, info.size)
    response = web.StreamResponse(status=206 if span else 200,
                                  headers=_headers(digest, end - start))
    if span:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{info.size}"

    spans = download.ranges(start, end)
    with os.fdopen(fd, "rb") as staging:
        async with contextlib.aclosing(spans):
            try:
                first = await anext(spans, None)
            except UpstreamError as exc:
                raise _as_registry_error(exc) from exc
            await response.prepare(request)
            try:
                # Each span that has landed goes out with sendfile, like a stored blob.
                if first is not None:
                    await _send(request, staging, *first)
                async for offset, count in spans:
                    await _send(request, staging, offset, count)
            except (ConnectionError, RuntimeError) as exc:
                # The client went away; the download goes on without it.
                log.info("client left during blob %s: %s", digest, exc)
                return response
            except Exception as exc:
                # Headers (with the full length) are out: cut the connection so the
                # client sees an error, never a short or wrong blob that ends cleanly.
                log.warning("aborting response for blob %s: %s", digest, exc)
                if request.transport is not None:
                    request.transport.abort()
                return response
    await response.write_eof()
    return response


async def _send(request: web.Request, staging: BinaryIO, offset: int, count: int) -> None:
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("client connection lost")
    await asyncio.get_running_loop().sendfile(transport, staging, offset, count)


def _as_registry_error(exc: UpstreamError) -> RegistryError:
    if isinstance(exc, TooManyRequests):
        return RegistryError("TOOMANYREQUESTS", f"upstream rate limit: {exc}")
    if isinstance(exc, AuthError):
        return RegistryError("UNAVAILABLE", f"upstream refused our credentials: {exc}",
                             status=502)
    return RegistryError("UNAVAILABLE", f"upstream fetch failed: {exc}", status=502)
