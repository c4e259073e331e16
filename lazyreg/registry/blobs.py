"""`GET|HEAD /v2/<name>/blobs/<digest>`: a blob of the distribution's version, from the lazy store.

A blob is served only if it belongs to the distribution's repository version.
Whether it comes from storage or upstream is the lazy store's business
(`lazyreg.fetch.LazyStore`); this handler validates, looks the blob up,
answers conditional and range requests the same way for both (`conditional`,
`ranges`) and sends the body (`send`). Every answer carries `ETag: "<digest>"`.

With `storage_redirect` and a store that presigns (an object store), a stored
blob is answered with a 307 to a presigned URL of it, GET and HEAD alike (as
distribution's S3 driver does); the client sends its Range there. A blob not
stored yet is fetched and served as always.
"""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from lazyreg.db.models import Blob
from lazyreg.errors import RegistryError
from lazyreg.fetch import BlobRef, FetchedBody, StoredBody
from lazyreg.observe.keys import served_from
from lazyreg.registry.conditional import etag_of, not_modified
from lazyreg.registry.listing import API_HEADERS
from lazyreg.registry.ranges import parse_range
from lazyreg.registry.resolve import Target, members, target_of
from lazyreg.registry.send import send_body
from lazyreg.state import AppState, state
from lazyreg.storage import is_supported


def _lookup(session: Session, target: Target, name: str, digest: str) -> BlobRef:
    row = session.execute(
        select(Blob.id, Blob.size)
        .where(Blob.digest == digest,
               Blob.id.in_(members(target)))).first()
    if row is None:
        raise RegistryError("BLOB_UNKNOWN", f"blob {digest} unknown to repository {name!r}",
                            detail={"digest": digest})
    return BlobRef(digest, row[1], row[0])


async def _find(app: AppState, name: str, digest: str) -> BlobRef:
    target = await target_of(app, name)
    key = ("blob", target, digest)  # the Target names its repository by uid, never reused
    blob: BlobRef | None = app.lookups.get(key)
    if blob is None:
        blob = await app.services.db.read(lambda s: _lookup(s, target, name, digest))
        app.lookups.put(key, blob)
    return blob


async def _presigned(app: AppState, digest: str, method: str) -> str | None:
    store = app.services.store
    if await store.stat(digest) is None:
        return None
    return await store.presign(digest, method)


async def get_blob(request: web.Request) -> web.StreamResponse:
    name, digest = request.match_info["name"], request.match_info["digest"]
    if not is_supported(digest):
        raise RegistryError("DIGEST_INVALID", f"invalid digest {digest[:200]!r}")
    app = state(request)
    blob = await _find(app, name, digest)
    etag = etag_of(digest)
    headers = {**API_HEADERS, "Docker-Content-Digest": digest, "ETag": etag,
               "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
    if not_modified(request, digest):
        return web.Response(status=304, headers=headers)
    if app.services.settings.storage_redirect:
        with app.services.usage.sending(digest):  # a use, for the LRU bound
            url = await _presigned(app, digest, request.method)
        if url is not None:
            served_from(request, "storage")
            return web.Response(status=307, headers={**headers, "Location": url})
    if request.method == "HEAD":
        size = await app.blobs.stat(blob)
        return web.Response(headers={**headers, "Content-Length": str(size)})
    span = parse_range(request.headers.get("Range"), blob.size,  # 416 before any fetch
                       request.headers.get("If-Range"), etag)
    # Used, and not to be evicted, from before it is opened until it is sent.
    with app.services.usage.sending(digest):
        body = await app.blobs.open(blob)
        if isinstance(body, StoredBody):
            served_from(request, "storage")
        else:
            served_from(request, "upstream", body if isinstance(body, FetchedBody) else None)
        return await send_body(request, body, span, headers,
                               app.services.settings.send_timeout)
