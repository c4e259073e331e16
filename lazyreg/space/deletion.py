"""Deleting stored blobs: the row first, then the file, each blob under its download lease.

- A blob is deleted only while this process holds the lease a download of it
  takes (`blob:<digest>`), so no download of it can commit between its row
  going and its file going; a blob whose lease another process holds (a
  download in flight) is skipped, and so is one the caller says is in use.
- Rows go first, in one transaction per batch that asks the caller's `still`
  query again whether each blob may go; the files go after, through
  `BlobStore.delete`, then the leases are released. A crash between the two
  leaves files without rows, which start-up adopts again
  (`lazyreg.check.adopt_orphan_files`): the blob stays stored and consistent,
  and the next run deletes it. The other order would leave rows without files.
- A reader that opened the file before it went keeps reading it (an unlinked
  open file stays readable); a request after that finds neither row nor file
  and the lazy store fetches the blob again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lazyreg.db import leases
from lazyreg.db.artifacts import NewArtifact, record_artifacts
from lazyreg.db.models import Artifact
from lazyreg.services import Services
from lazyreg.worker import WorkerId

log = logging.getLogger(__name__)

CLAIM_RACES = 3  # PostgreSQL: another process inserted a lease row first

# Which of these digests may still be deleted now: digest -> size. Runs in the
# transaction that deletes their rows.
Still = Callable[[Session, list[str]], dict[str, int]]


@dataclass
class Removed:
    count: int = 0
    bytes: int = 0
    skipped: int = 0  # in use, or a download of it in flight
    # (digest, size) of each blob deleted by one `delete_blobs` call; `add` leaves it out.
    gone: list[tuple[str, int]] = field(default_factory=list)

    def add(self, other: Removed) -> None:
        self.count += other.count
        self.bytes += other.bytes
        self.skipped += other.skipped


def _take(session: Session, digests: list[str], still: Still, me: WorkerId,
          ttl: float) -> dict[str, NewArtifact]:
    """Claim the leases of the blobs that may go and delete their rows; the rows taken."""
    claimed = [d for d in still(session, digests)
               if leases.claim(session, leases.blob_lease(d), me, ttl) is None]
    taken: dict[str, NewArtifact] = {}
    for start in range(0, len(claimed), 500):
        batch = claimed[start:start + 500]
        for row in session.scalars(select(Artifact).where(Artifact.digest.in_(batch))):
            taken[row.digest] = NewArtifact(row.digest, row.size, row.kind, row.location)
        session.execute(delete(Artifact).where(Artifact.digest.in_(batch)))
    return taken


async def delete_blobs(services: Services, digests: Sequence[str], still: Still,
                       in_use: Callable[[str], bool] = lambda _: False) -> Removed:
    """Delete the stored blobs `digests` (one batch: one transaction) that may still go."""
    wanted = [d for d in digests if not in_use(d)]
    me, ttl = services.worker, services.settings.lease_ttl
    taken: dict[str, NewArtifact] = {}
    for attempt in range(CLAIM_RACES):
        try:
            taken = await services.db.write(lambda s: _take(s, wanted, still, me, ttl))
            break
        except IntegrityError:
            if attempt == CLAIM_RACES - 1:
                raise
    gone: list[str] = []
    try:
        for digest in taken:
            await services.store.delete(digest)
            gone.append(digest)
    except BaseException:
        # Storage refused: the files still there get their rows back, so that
        # database and storage agree while this process lives.
        back = [a for d, a in taken.items() if d not in gone]
        await asyncio.shield(services.db.write(lambda s: record_artifacts(s, back)))
        raise
    finally:
        if taken:
            keys = [leases.blob_lease(d) for d in taken]
            try:
                await asyncio.shield(services.db.write(
                    lambda s: leases.release_many(s, keys, me)))
            except Exception as exc:  # they expire, or die with this process
                log.warning("could not release %d blob leases: %s", len(keys), exc)
    return Removed(len(taken), sum(a.size for a in taken.values()), len(digests) - len(taken),
                   [(a.digest, a.size) for a in taken.values()])
