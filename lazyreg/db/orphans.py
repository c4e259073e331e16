"""Content and artifacts that no repository version holds, and deleting them safely.

Content goes in dependency order, a batch per transaction, and each delete
checks again, in the same transaction, that nothing holds the rows:

1. tags no version holds;
2. manifests no version holds and no remaining tag or manifest list names,
   with their `ManifestSource`, `ManifestBlob` and `ManifestChild` (as the list)
   rows; the children of a list deleted in one pass are orphans in the next;
3. blobs no version holds and no remaining manifest names, with their
   `BlobSource` rows.

Content younger than the protection time stays (`Content.created`; None is
older than the column). An artifact is an orphan once no content row has its
digest, and it was neither stored nor used (`last_used`: served, or found
stored by a sync) within the protection time: so a sync running meanwhile
keeps both what it stored and what it reuses.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, delete, exists, func, or_, select
from sqlalchemy.orm import Session

from lazyreg.db.content import chunked
from lazyreg.db.models import (
    Artifact,
    Blob,
    BlobSource,
    Content,
    Manifest,
    ManifestBlob,
    ManifestChild,
    ManifestSource,
    RepositoryContent,
    Tag,
)

KINDS = ("tag", "manifest", "blob")  # the order they are deleted in


def _orphan(kind: str, cutoff: datetime) -> list[ColumnElement[bool]]:
    c = Content
    conditions = [c.kind == kind,
                  ~exists().where(RepositoryContent.content_id == c.id),
                  or_(c.created.is_(None), c.created < cutoff)]
    if kind == "manifest":
        conditions += [~exists().where(Tag.manifest_id == c.id),
                       ~exists().where(ManifestChild.child_id == c.id)]
    elif kind == "blob":
        conditions.append(~exists().where(ManifestBlob.blob_id == c.id))
    return conditions


def count_orphans(session: Session, kind: str, cutoff: datetime) -> int:
    return session.scalar(select(func.count()).select_from(Content)
                          .where(*_orphan(kind, cutoff))) or 0


def orphan_ids(session: Session, kind: str, cutoff: datetime, after: int, limit: int
               ) -> list[int]:
    return list(session.scalars(select(Content.id).where(*_orphan(kind, cutoff), Content.id > after)
                                .order_by(Content.id).limit(limit)))


def delete_orphans(session: Session, kind: str, ids: Sequence[int], cutoff: datetime) -> int:
    """Delete those of `ids` that are still orphans of `kind`; how many went."""
    doomed: list[int] = []
    for batch in chunked(list(ids)):
        doomed += session.scalars(select(Content.id).where(*_orphan(kind, cutoff),
                                                           Content.id.in_(batch)))
    for batch in chunked(doomed):
        if kind == "tag":
            session.execute(delete(Tag).where(Tag.id.in_(batch)))
        elif kind == "manifest":
            session.execute(delete(ManifestSource).where(ManifestSource.manifest_id.in_(batch)))
            session.execute(delete(ManifestBlob).where(ManifestBlob.manifest_id.in_(batch)))
            session.execute(delete(ManifestChild).where(ManifestChild.list_id.in_(batch)))
            session.execute(delete(Manifest).where(Manifest.id.in_(batch)))
        else:
            session.execute(delete(BlobSource).where(BlobSource.blob_id.in_(batch)))
            session.execute(delete(Blob).where(Blob.id.in_(batch)))
        session.execute(delete(Content).where(Content.id.in_(batch)))
    return len(doomed)


def _orphan_artifact(cutoff: datetime, cutoff_ts: float) -> list[ColumnElement[bool]]:
    a = Artifact
    return [~exists().where(Manifest.digest == a.digest), ~exists().where(Blob.digest == a.digest),
            a.created < cutoff, or_(a.last_used.is_(None), a.last_used < cutoff_ts)]


def count_orphan_artifacts(session: Session, cutoff: datetime, cutoff_ts: float) -> int:
    return session.scalar(select(func.count()).select_from(Artifact)
                          .where(*_orphan_artifact(cutoff, cutoff_ts))) or 0


def orphan_artifacts(session: Session, cutoff: datetime, cutoff_ts: float, after: int,
                     limit: int) -> list[tuple[int, str]]:
    """(id, digest) of orphan artifacts after id `after`, in id order."""
    return [(i, d) for i, d in session.execute(
        select(Artifact.id, Artifact.digest).where(*_orphan_artifact(cutoff, cutoff_ts),
                                                   Artifact.id > after)
        .order_by(Artifact.id).limit(limit))]


def still_orphan_artifacts(session: Session, digests: Sequence[str], cutoff: datetime,
                           cutoff_ts: float) -> dict[str, int]:
    out: dict[str, int] = {}
    for batch in chunked(list(digests)):
        out.update(session.execute(
            select(Artifact.digest, Artifact.size).where(*_orphan_artifact(cutoff, cutoff_ts),
                                                         Artifact.digest.in_(batch))).all())
    return out
