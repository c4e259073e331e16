"""`GET /v2/<name>/referrers/<digest>[?artifactType=…]`: the OCI 1.1 referrers API.

Answers an OCI image index of the manifests in the served version whose
`subject` is `digest`, each with its media type, digest, size, artifactType
and annotations (read from the stored manifest). An unknown subject has no
referrers: an empty index, 200. With `artifactType`, only those of that type,
and the `OCI-Filters-Applied: artifactType` header.

Bounded: a page holds at most MAX_REFERRERS descriptors and stops adding them
past MAX_INDEX_BYTES of JSON (the manifest size limit, so that a client
reading the index as a manifest can); a `Link` names the next page. Pages
are in digest order; `last` is the last digest of the previous page.
Manifests are read one at a time, so memory holds one manifest's bytes.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from lazyreg.db.models import Manifest
from lazyreg.errors import RegistryError
from lazyreg.oci import mediatypes as mt
from lazyreg.registry.listing import API_HEADERS
from lazyreg.registry.params import digest_param, text_param
from lazyreg.registry.resolve import Target, members, target_of
from lazyreg.state import state

MAX_REFERRERS = 1000
MAX_INDEX_BYTES = 4 * 1024 * 1024
# RFC 6838: type "/" subtype, each up to 127 characters.
_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MEDIA_TYPE = re.compile(rf"{_NAME}/{_NAME}")


def _parsed(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:  # stored opaque: a referrer is listed even if we cannot read it
        return {}
    return value if isinstance(value, dict) else {}


def _descriptor(digest: str, media_type: str, size: int, artifact_type: str | None,
                data: bytes) -> dict[str, Any]:
    manifest = _parsed(data)
    if artifact_type is None:  # the spec's rule, for rows recorded without the column
        config = manifest.get("config")
        given = manifest.get("artifactType")
        if isinstance(given, str):
            artifact_type = given
        elif isinstance(config, dict) and isinstance(config.get("mediaType"), str):
            artifact_type = config["mediaType"]
    descriptor: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
    if artifact_type:
        descriptor["artifactType"] = artifact_type
    annotations = manifest.get("annotations")
    if isinstance(annotations, dict) and annotations:
        descriptor["annotations"] = annotations
    return descriptor


def _page(session: Session, target: Target, subject: str, artifact_type: str | None,
          last: str | None) -> tuple[list[dict[str, Any]], bool]:
    """The descriptors of one page, and whether more follow."""
    stmt = (select(Manifest.id, Manifest.digest, Manifest.media_type, Manifest.size,
                   Manifest.artifact_type)
            .where(Manifest.subject_digest == subject,
                   Manifest.id.in_(members(target))))
    if artifact_type is not None:
        stmt = stmt.where(Manifest.artifact_type == artifact_type)
    if last is not None:
        stmt = stmt.where(Manifest.digest > last)
    rows = session.execute(stmt.order_by(Manifest.digest).limit(MAX_REFERRERS + 1)).all()
    page: list[dict[str, Any]] = []
    used = 0
    for row in rows[:MAX_REFERRERS]:
        data = session.scalar(select(Manifest.data).where(Manifest.id == row.id)) or b""
        descriptor = _descriptor(row.digest, row.media_type, row.size, row.artifact_type, data)
        cost = len(json.dumps(descriptor)) + 2
        if page and used + cost > MAX_INDEX_BYTES:
            return page, True
        page.append(descriptor)
        used += cost
    return page, len(rows) > MAX_REFERRERS


async def get_referrers(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    app = state(request)
    target = await target_of(app, name)
    subject = digest_param(request.match_info["digest"])
    artifact_type = text_param("artifactType", request.query.get("artifactType"), 255)
    if artifact_type is not None:
        # A media type holds no space: this one was a "+" left unencoded (`+json`).
        artifact_type = artifact_type.replace(" ", "+")
    if artifact_type is not None and not _MEDIA_TYPE.fullmatch(artifact_type):
        raise RegistryError("UNSUPPORTED", f"invalid artifactType={artifact_type!r}:"
                            " expected a media type such as application/vnd.example+json",
                            status=400, detail={"parameter": "artifactType"})
    last_raw = request.query.get("last")
    last = digest_param(last_raw) if last_raw else None

    page, more = await app.services.db.read(
        lambda s: _page(s, target, subject, artifact_type, last))
    headers = {**API_HEADERS, "Content-Type": mt.OCI_INDEX}
    if artifact_type is not None:
        headers["OCI-Filters-Applied"] = "artifactType"
    if more:
        query = {"last": page[-1]["digest"]}
        if artifact_type is not None:
            query["artifactType"] = artifact_type
        headers["Link"] = f'<{request.path}?{urlencode(query)}>; rel="next"'
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": page}
    return web.Response(body=json.dumps(index).encode(), headers=headers)
