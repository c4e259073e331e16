"""`artifacts/`: what storage holds, with a summary of counts and bytes by kind."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lazyreg.api import paging
from lazyreg.api.http import query_choice, query_value, read, respond
from lazyreg.api.schemas import ArtifactOut, ArtifactPage, ArtifactSummary, KindSummary
from lazyreg.db.models import Artifact

# Always present in a summary, so that a client can read them without checking.
KINDS = ("manifest", "config", "layer")
# What `?kind=` may ask for: also files adopted at start-up, whose kind is unknown.
FILTER_KINDS = (*KINDS, "blob")


def summary(session: Session, kind: str | None = None, digest: str | None = None
            ) -> ArtifactSummary:
    stmt = select(Artifact.kind, func.count(), func.coalesce(func.sum(Artifact.size), 0))
    if kind:
        stmt = stmt.where(Artifact.kind == kind)
    if digest:
        stmt = stmt.where(Artifact.digest == digest)
    by_kind = {k: KindSummary() for k in KINDS if kind in (None, k)}
    for row_kind, count, size in session.execute(stmt.group_by(Artifact.kind)):
        by_kind[row_kind] = KindSummary(count=count, bytes=int(size))
    return ArtifactSummary(count=sum(k.count for k in by_kind.values()),
                           bytes=sum(k.bytes for k in by_kind.values()), by_kind=by_kind)


def to_out(artifact: Artifact) -> ArtifactOut:
    return ArtifactOut(digest=artifact.digest, size=artifact.size, kind=artifact.kind,
                       location=artifact.location, created=artifact.created)


async def list_(request: web.Request) -> web.Response:
    window = paging.Window.of(request)
    kind = query_choice(request, "kind", FILTER_KINDS)
    digest = query_value(request, "digest")

    def query(session: Session) -> tuple[int, list[ArtifactOut], ArtifactSummary]:
        stmt = select(Artifact).order_by(Artifact.id)
        if kind:
            stmt = stmt.where(Artifact.kind == kind)
        if digest:
            stmt = stmt.where(Artifact.digest == digest)
        count, rows = paging.fetch(session, stmt, window)
        return count, [to_out(row[0]) for row in rows], summary(session, kind, digest)
    count, results, totals = await read(request, query)
    return respond(ArtifactPage(**paging.envelope(request, window, count), results=results,
                                summary=totals))
