"""`GET|HEAD /v2/<name>/manifests/<tag|digest>`: the exact stored bytes, negotiated by Accept."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from lazyreg.db import content as q
from lazyreg.db.models import Manifest, ManifestChild, Tag
from lazyreg.errors import RegistryError
from lazyreg.oci import mediatypes as mt
from lazyreg.oci.digest import DIGEST_RE, is_digest
from lazyreg.oci.names import is_tag
from lazyreg.registry.listing import API_HEADERS
from lazyreg.registry.resolve import Target, target_of
from lazyreg.state import state


def _accepted(request: web.Request) -> frozenset[str] | None:
    """Media types the client accepts; None when it accepts anything."""
    values = request.headers.getall("Accept", [])
    types = {part.split(";")[0].strip() for v in values for part in v.split(",")}
    types.discard("")
    if not types or "*/*" in types:
        return None
    return frozenset(types)


@dataclass(frozen=True)
class ManifestView:
    digest: str
    media_type: str
    size: int
    data: bytes


def _view(manifest: Manifest) -> ManifestView:
    return ManifestView(manifest.digest, manifest.media_type, manifest.size, manifest.data)


def _find(session: Session, target: Target, name: str, reference: str,
          accepted: frozenset[str] | None) -> ManifestView:
    members = q.in_version(target.repository_id, target.version)
    if reference.startswith("sha256:") or is_digest(reference):
        if not DIGEST_RE.match(reference):
            raise RegistryError("DIGEST_INVALID", f"invalid digest {reference!r}")
        manifest = session.scalar(select(Manifest).where(Manifest.digest == reference,
                                                         Manifest.id.in_(members)))
        if manifest is None:
            raise RegistryError("MANIFEST_UNKNOWN", f"manifest {reference} unknown",
                                detail={"name": name, "reference": reference})
        return _view(manifest)
    if not is_tag(reference):
        raise RegistryError("MANIFEST_INVALID", f"invalid tag {reference!r}")
    manifest = session.scalar(
        select(Manifest).join(Tag, Tag.manifest_id == Manifest.id)
        .where(Tag.name == reference, Tag.id.in_(members)))
    if manifest is None:
        raise RegistryError("MANIFEST_UNKNOWN", f"manifest unknown: tag {reference!r}",
                            detail={"name": name, "tag": reference})
    if accepted is not None and manifest.media_type in mt.MANIFEST_LISTS \
            and manifest.media_type not in accepted:
        # An old client that cannot read lists gets the linux/amd64 image, as
        # the distribution registry does.
        child = session.scalar(
            select(Manifest).join(ManifestChild, ManifestChild.child_id == Manifest.id)
            .where(ManifestChild.list_id == manifest.id, ManifestChild.os == "linux",
                   ManifestChild.architecture == "amd64"))
        if child is not None and child.media_type in accepted:
            return _view(child)
    return _view(manifest)


async def get_manifest(request: web.Request) -> web.Response:
    name, reference = request.match_info["name"], request.match_info["reference"]
    accepted = _accepted(request)
    app = state(request)
    target = await target_of(app, name)
    # A version's content never changes: its answers are cached for good.
    key = ("manifest", target.repository_id, target.version, reference, accepted)
    manifest: ManifestView | None = app.lookups.get(key)
    if manifest is None:
        manifest = await app.services.db.read(
            lambda s: _find(s, target, name, reference, accepted))
        app.lookups.put(key, manifest)
    headers = {
        **API_HEADERS,
        "Docker-Content-Digest": manifest.digest,
        "ETag": f'"{manifest.digest}"',
        "Content-Type": manifest.media_type,
    }
    if request.method == "HEAD":
        headers["Content-Length"] = str(manifest.size)
        return web.Response(status=200, headers=headers)
    return web.Response(body=manifest.data, status=200, headers=headers)
