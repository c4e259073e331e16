"""`GET|HEAD /v2/<name>/manifests/<tag|digest>`: the exact stored bytes, negotiated by Accept.

Every answer carries `ETag: "<digest>"`; `If-None-Match` with it answers 304.
Under a pull-through distribution, the manifest is fetched from the upstream
first when needed (`lazyreg.registry.pullthrough`).

Two cached lookups, so that memory does not grow with the variety of Accept
headers: (target, reference, accepted manifest types) -> which manifest, and
digest -> its bytes. Accept is reduced to the manifest types lazyreg knows,
since only they change the answer: at most 17 variants of a reference, and
one copy of each manifest's bytes whatever the Accept header (and whatever
the repository: bytes named by their digest are the same everywhere).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from lazyreg.db.models import PENDING, Manifest, ManifestChild, Tag
from lazyreg.errors import RegistryError
from lazyreg.oci import mediatypes as mt
from lazyreg.oci.names import is_tag
from lazyreg.registry.conditional import etag_of, not_modified
from lazyreg.registry.listing import API_HEADERS
from lazyreg.registry.params import digest_param
from lazyreg.registry.pullthrough import manifest_target
from lazyreg.registry.resolve import Target, members
from lazyreg.state import state
from lazyreg.sync.pending import PendingUnavailable


def accepted_types(values: list[str]) -> frozenset[str] | None:
    """The known manifest types among `Accept` header values; None when anything goes."""
    types = {part.split(";")[0].strip().lower() for v in values for part in v.split(",")}
    types.discard("")
    if not types or "*/*" in types:
        return None
    # Members taken from the constant set: cached keys share its strings.
    return frozenset(t for t in mt.KNOWN_MANIFESTS if t in types)


@dataclass(frozen=True)
class ManifestRef:
    digest: str
    media_type: str
    size: int


# Columns only: the bytes are read (and cached) apart, and only for a GET.
_REF = (Manifest.id, Manifest.digest, Manifest.media_type, Manifest.size)


def _by_digest(session: Session, target: Target, name: str, digest: str) -> ManifestRef:
    held = members(target)
    row = session.execute(select(*_REF).where(Manifest.digest == digest,
                                              Manifest.id.in_(held))).first()
    if row is None:
        raise RegistryError("MANIFEST_UNKNOWN", f"manifest {digest} unknown",
                            detail={"name": name, "reference": digest})
    return ManifestRef(row.digest, row.media_type, row.size)


def _by_tag(session: Session, target: Target, name: str, tag: str,
            accepted: frozenset[str] | None) -> ManifestRef:
    held = members(target)
    row = session.execute(
        select(*_REF).join(Tag, Tag.manifest_id == Manifest.id)
        .where(Tag.name == tag, Tag.id.in_(held))).first()
    if row is None:
        raise RegistryError("MANIFEST_UNKNOWN", f"manifest unknown: tag {tag!r}",
                            detail={"name": name, "tag": tag})
    if accepted is not None and row.media_type in mt.MANIFEST_LISTS \
            and row.media_type not in accepted:
        # An old client that cannot read lists gets the linux/amd64 image, as
        # the distribution registry does.
        child = session.execute(
            select(*_REF).join(ManifestChild, ManifestChild.child_id == Manifest.id)
            .where(ManifestChild.list_id == row.id, ManifestChild.os == "linux",
                   ManifestChild.architecture == "amd64")
            .order_by(ManifestChild.position)).first()
        if child is not None and child.media_type in accepted:
            row = child
    return ManifestRef(row.digest, row.media_type, row.size)


def _bytes(session: Session, digest: str) -> bytes:
    """Its bytes; empty (PENDING) for one recorded but not fetched yet."""
    data = session.scalar(select(Manifest.data).where(Manifest.digest == digest))
    if data is None:  # removed since it was found (orphan cleanup)
        raise RegistryError("MANIFEST_UNKNOWN", f"manifest {digest} unknown")
    return bytes(data)


async def _fetch_pending(request: web.Request, digest: str) -> bytes:
    try:
        return await state(request).pending.fetch(digest)
    except PendingUnavailable as exc:
        raise RegistryError("UNAVAILABLE", str(exc)) from None
    except TimeoutError:
        raise RegistryError("UNAVAILABLE", f"manifest {digest}: the upstream is too slow"
                            ) from None


async def get_manifest(request: web.Request) -> web.Response:
    name, reference = request.match_info["name"], request.match_info["reference"]
    app = state(request)
    if ":" in reference:  # a tag never holds one
        reference = digest_param(reference)
    elif not is_tag(reference):
        raise RegistryError("MANIFEST_INVALID", f"invalid tag {reference[:300]!r}")
    target = await manifest_target(request, name, reference)
    if ":" in reference:
        digest = reference
        key: tuple[object, ...] = ("manifest", target, digest)
        found: ManifestRef | None = app.lookups.get(key)
        if found is None:
            found = await app.services.db.read(lambda s: _by_digest(s, target, name, digest))
            app.lookups.put(key, found)
    else:
        accepted = accepted_types(request.headers.getall("Accept", []))
        key = ("manifest", target, reference, accepted)
        found = app.lookups.get(key)
        if found is None:
            found = await app.services.db.read(
                lambda s: _by_tag(s, target, name, reference, accepted))
            app.lookups.put(key, found)

    headers = {**API_HEADERS, "Docker-Content-Digest": found.digest,
               "ETag": etag_of(found.digest)}
    if not_modified(request, found.digest):
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = found.media_type
    if request.method == "HEAD":
        headers["Content-Length"] = str(found.size)
        return web.Response(status=200, headers=headers)
    data: bytes | None = app.lookups.get(("manifest-bytes", found.digest))
    if data is None:
        digest = found.digest
        data = await app.services.db.read(lambda s: _bytes(s, digest))
        if data == PENDING:  # left by a sync's platform filter: fetched now, once
            data = await _fetch_pending(request, digest)
        app.lookups.put(("manifest-bytes", digest), data)
    # In the background, after this answer: no wait for it (a dict look-up once seen).
    app.prefetch.manifest_got(found.digest, found.media_type)
    return web.Response(body=data, status=200, headers=headers)
