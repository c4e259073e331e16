"""Which stored blobs may be deleted to save space because they can be fetched again.

A stored artifact is *refetchable* when all of these hold:

- it is a layer: configs and manifests are metadata, always kept;
- its blob has a source (`BlobSource`): a remote it can be fetched from again;
- no version of an *immediate* repository holds it. A repository is immediate
  when its latest sync used an `immediate` remote (`Repository.sync_policy`);
  every version it keeps counts, so a distribution pinned to an older one
  keeps its blobs too. This is computed from the membership rows each time,
  never stored on the artifact, so that it follows repository deletion,
  retention and a change of policy without anything to keep up to date;
- it is not a config of any manifest (a config fetched lazily is recorded as a
  layer).

Reclaim deletes the refetchable layers of one repository; the bounded cache
deletes the least recently used refetchable layers that nobody is being sent
(`busy_until`). Blobs an immediate sync downloads are not refetchable until its
version is written, because they have no source before that. A layer it finds
already stored (an on_demand repository's) stays refetchable until then: if it
is evicted in that window, the immediate repository serves it on demand until
its next sync stores it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, exists, func, or_, select
from sqlalchemy.orm import Session

from lazyreg.db.content import chunked
from lazyreg.db.models import (
    Artifact,
    Blob,
    BlobSource,
    ManifestBlob,
    Repository,
    RepositoryContent,
)

IMMEDIATE = "immediate"


def pinned_by_immediate() -> ColumnElement[bool]:
    """A version of an immediate repository holds the blob (`Blob` in the query)."""
    rc = RepositoryContent
    return exists().where(rc.content_id == Blob.id, Repository.id == rc.repository_id,
                          Repository.sync_policy == IMMEDIATE)


def refetchable() -> Select[str, int]:
    """(digest, size) of every refetchable stored layer."""
    a = Artifact
    return (select(a.digest, a.size).join(Blob, Blob.digest == a.digest)
            .where(a.kind == "layer",
                   exists().where(BlobSource.blob_id == Blob.id),
                   ~exists().where(ManifestBlob.blob_id == Blob.id, ManifestBlob.position == -1),
                   ~pinned_by_immediate()))


def not_busy(now: float) -> ColumnElement[bool]:
    return or_(Artifact.busy_until.is_(None), Artifact.busy_until < now)


@dataclass(frozen=True)
class StoredBytes:
    evictable_bytes: int  # refetchable layers
    evictable_count: int
    kept_bytes: int  # everything else stored: configs, manifests, immediate blobs
    kept_count: int


def stored_bytes(session: Session) -> StoredBytes:
    sub = refetchable().subquery()
    evictable, ev_count = session.execute(
        select(func.coalesce(func.sum(sub.c.size), 0), func.count()).select_from(sub)).one()
    total, count = session.execute(
        select(func.coalesce(func.sum(Artifact.size), 0), func.count())
        .select_from(Artifact)).one()
    return StoredBytes(int(evictable), int(ev_count), int(total) - int(evictable),
                       int(count) - int(ev_count))


@dataclass(frozen=True)
class Candidate:
    digest: str
    size: int
    used: float  # last_used, 0 when never recorded
    id: int


def eviction_candidates(session: Session, now: float, after: tuple[float, int] | None,
                        limit: int) -> list[Candidate]:
    """Refetchable layers nobody is being sent, least recently used first, from `after` on.

    In the order of the `last_used` index, so that the first page costs a few
    index steps, not a sort of every stored layer (every row has a `last_used`).
    """
    used = Artifact.last_used
    stmt = (refetchable().add_columns(used, Artifact.id).where(not_busy(now))
            .order_by(used, Artifact.id).limit(limit))
    if after is not None:
        stmt = stmt.where(or_(used > after[0], (used == after[0]) & (Artifact.id > after[1])))
    return [Candidate(d, int(s), float(u or 0.0), i) for d, s, u, i in session.execute(stmt)]


def still_evictable(session: Session, digests: Sequence[str], now: float) -> dict[str, int]:
    """Those of `digests` that are refetchable and not busy now: digest -> size."""
    out: dict[str, int] = {}
    for batch in chunked(list(digests)):
        out.update((d, s) for d, s in session.execute(
            refetchable().where(Artifact.digest.in_(batch), not_busy(now))))
    return out


def _held_by(repository_id: int) -> Select[int]:
    return select(RepositoryContent.content_id).where(
        RepositoryContent.repository_id == repository_id)


def reclaimable_totals(session: Session, repository_id: int) -> tuple[int, int]:
    """(count, bytes) of the refetchable layers any version of the repository holds."""
    sub = refetchable().where(Blob.id.in_(_held_by(repository_id))).subquery()
    count, size = session.execute(
        select(func.count(), func.coalesce(func.sum(sub.c.size), 0)).select_from(sub)).one()
    return int(count), int(size)


def reclaimable_page(session: Session, repository_id: int, after: int, limit: int
                     ) -> list[tuple[int, str]]:
    """(artifact id, digest) of the repository's refetchable layers after id `after`."""
    stmt = (refetchable().with_only_columns(Artifact.id, Artifact.digest)
            .where(Blob.id.in_(_held_by(repository_id)), Artifact.id > after)
            .order_by(Artifact.id).limit(limit))
    return [(i, d) for i, d in session.execute(stmt)]


def still_reclaimable(session: Session, repository_id: int, digests: Sequence[str],
                      now: float) -> dict[str, int]:
    """Those of `digests` still reclaimable and not being sent by another process."""
    out: dict[str, int] = {}
    for batch in chunked(list(digests)):
        out.update((d, s) for d, s in session.execute(refetchable().where(
            Blob.id.in_(_held_by(repository_id)), Artifact.digest.in_(batch),
            not_busy(now))))
    return out


def kept_for_immediate(session: Session, repository_id: int) -> tuple[int, int]:
    """(count, bytes) of the repository's stored layers that an immediate repository needs."""
    held = _held_by(repository_id)
    count, size = session.execute(
        select(func.count(), func.coalesce(func.sum(Artifact.size), 0))
        .select_from(Artifact).join(Blob, Blob.digest == Artifact.digest)
        .where(Artifact.kind == "layer", Blob.id.in_(held), pinned_by_immediate())).one()
    return int(count), int(size)
