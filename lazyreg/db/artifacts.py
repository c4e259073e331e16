"""Artifact rows: what storage holds, by digest. `record_artifacts` is the one writer.

A row is written after the blob was committed to storage (its bytes verified),
never before; recording a digest that already has a row does nothing, also
when another process records it at the same moment (ON CONFLICT DO NOTHING),
so callers need not catch unique violations. A new row counts as used now
(`last_used`): what was just fetched is the last the bounded cache evicts.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from lazyreg.db.content import chunked
from lazyreg.db.engine import upsert
from lazyreg.db.models import Artifact, utcnow


@dataclass(frozen=True)
class NewArtifact:
    digest: str
    size: int
    kind: str  # manifest | config | layer | blob
    location: str  # as the storage backend names it (`BlobStore.location`)


def record_artifacts(session: Session, artifacts: Iterable[NewArtifact]) -> None:
    """Insert a row for each artifact that has none."""
    now, used = utcnow(), time.time()
    rows = {a.digest: {"digest": a.digest, "size": a.size, "kind": a.kind,
                       "location": a.location, "created": now, "last_used": used}
            for a in artifacts}
    if not rows:
        return
    insert = upsert(session)
    for batch in chunked(list(rows.values()), 150):  # 6 parameters a row
        session.execute(insert(Artifact).on_conflict_do_nothing(index_elements=["digest"]),
                        batch)


def is_stored(session: Session, digest: str) -> bool:
    return session.scalar(select(Artifact.id).where(Artifact.digest == digest)) is not None


def stored_digests(session: Session, digests: Iterable[str]) -> set[str]:
    """Those of `digests` that have an artifact row."""
    out: set[str] = set()
    for batch in chunked(list(digests)):
        out.update(session.scalars(select(Artifact.digest).where(Artifact.digest.in_(batch))))
    return out
