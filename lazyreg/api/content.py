"""`content/tags/`, `content/manifests/`, `content/blobs/`: all, or one repository version's.

A blob or manifest is `stored` when an artifact with its digest exists; a blob
that is not stored is known only remotely and is fetched on its first pull.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVarTuple

from aiohttp import web
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from lazyreg.api import paging
from lazyreg.api.http import query_choice, query_int, query_value, read, respond
from lazyreg.api.lookup import referenced
from lazyreg.api.routing import Query
from lazyreg.api.schemas import ArtifactRef, BlobOut, ManifestOut, Page, SourceOut, TagOut
from lazyreg.db import content as q
from lazyreg.db.models import Artifact, Blob, BlobSource, Manifest, Remote, Repository, Tag
from lazyreg.errors import InvalidField
from lazyreg.oci.mediatypes import is_list

Ts = TypeVarTuple("Ts")

SCOPE = (
    Query("repository", "string", "Only the content of this repository (its latest version)"),
    Query("version", "integer", "With repository: that version instead of the latest"),
)
STORED = Query("stored", "boolean", "true: only stored content; false: only content not stored")
BOOLEANS = ("true", "false")


@dataclass(frozen=True)
class Scope:
    repository: str | None
    version: int | None

    @classmethod
    def of(cls, request: web.Request) -> Scope:
        repository = query_value(request, "repository")
        version = query_int(request, "version")
        if version is not None and repository is None:
            raise InvalidField("version", "needs ?repository=NAME")
        return cls(repository, version)

    def restrict(self, session: Session, stmt: Select[*Ts], content_id: Any) -> Select[*Ts]:
        """`stmt` limited to the content of the chosen repository version, if any."""
        if self.repository is None:
            return stmt
        repository = referenced(session, Repository, self.repository, "repository")
        number = repository.latest_version if self.version is None else self.version
        if number > repository.latest_version:
            raise InvalidField("version", f"repository {repository.name!r} has no version"
                               f" {number}")
        return stmt.where(content_id.in_(q.in_version(repository.id, number)))


def _stored_filter(request: web.Request, stmt: Select[*Ts]) -> Select[*Ts]:
    wanted = query_choice(request, "stored", BOOLEANS)
    if wanted is None:
        return stmt
    return stmt.where(Artifact.id.is_not(None) if wanted == "true" else Artifact.id.is_(None))


async def tags(request: web.Request) -> web.Response:
    window, scope = paging.Window.of(request), Scope.of(request)
    name = query_value(request, "name")

    def query(session: Session) -> tuple[int, list[TagOut]]:
        stmt = (select(Tag.name, Manifest.digest, Manifest.media_type)
                .join(Manifest, Manifest.id == Tag.manifest_id)
                .order_by(Tag.name, Manifest.digest))
        if name:
            stmt = stmt.where(Tag.name == name)
        count, rows = paging.fetch(session, scope.restrict(session, stmt, Tag.id), window)
        return count, [TagOut(name=r[0], digest=r[1], media_type=r[2]) for r in rows]
    count, results = await read(request, query)
    return respond(Page[TagOut](**paging.envelope(request, window, count), results=results))


async def manifests(request: web.Request) -> web.Response:
    window, scope = paging.Window.of(request), Scope.of(request)
    digest = query_value(request, "digest")

    def query(session: Session) -> tuple[int, list[ManifestOut]]:
        # Not the Manifest entity: that would load every manifest's bytes.
        stmt = (select(Manifest.digest, Manifest.media_type, Manifest.size, Artifact.id)
                .outerjoin(Artifact, Artifact.digest == Manifest.digest)
                .order_by(Manifest.id))
        if digest:
            stmt = stmt.where(Manifest.digest == digest)
        stmt = _stored_filter(request, stmt)
        count, rows = paging.fetch(session, scope.restrict(session, stmt, Manifest.id), window)
        return count, [ManifestOut(digest=r[0], media_type=r[1], size=r[2], is_list=is_list(r[1]),
                                   stored=r[3] is not None) for r in rows]
    count, results = await read(request, query)
    return respond(Page[ManifestOut](**paging.envelope(request, window, count), results=results))


async def blobs(request: web.Request) -> web.Response:
    window, scope = paging.Window.of(request), Scope.of(request)
    digest = query_value(request, "digest")

    def query(session: Session) -> tuple[int, list[BlobOut]]:
        stmt = (select(Blob.digest, Blob.size, Blob.media_type, Artifact.id, Artifact.size,
                       Artifact.kind, Artifact.location, Blob.id)
                .outerjoin(Artifact, Artifact.digest == Blob.digest)
                .order_by(Blob.id))
        if digest:
            stmt = stmt.where(Blob.digest == digest)
        stmt = _stored_filter(request, stmt)
        count, rows = paging.fetch(session, scope.restrict(session, stmt, Blob.id), window)
        sources = _sources(session, [r[7] for r in rows])
        results = []
        for r in rows:
            artifact = None if r[3] is None else ArtifactRef(digest=r[0], size=r[4], kind=r[5],
                                                             location=r[6])
            results.append(BlobOut(digest=r[0], size=r[1], media_type=r[2],
                                   stored=artifact is not None, artifact=artifact,
                                   sources=sources.get(r[7], [])))
        return count, results
    count, results = await read(request, query)
    return respond(Page[BlobOut](**paging.envelope(request, window, count), results=results))


def _sources(session: Session, blob_ids: list[int]) -> dict[int, list[SourceOut]]:
    """The upstream sources of a page of blobs, in one query."""
    out: dict[int, list[SourceOut]] = {}
    if not blob_ids:
        return out
    rows = session.execute(
        select(BlobSource.blob_id, Remote.name, BlobSource.upstream_name, BlobSource.failures,
               BlobSource.last_error, BlobSource.cooldown_until)
        .join(Remote, Remote.id == BlobSource.remote_id)
        .where(BlobSource.blob_id.in_(blob_ids)).order_by(BlobSource.id))
    for blob_id, remote, upstream_name, failures, last_error, cooldown_until in rows:
        out.setdefault(blob_id, []).append(SourceOut(
            remote=remote, upstream_name=upstream_name, failures=failures,
            last_error=last_error, cooldown_until=cooldown_until))
    return out
