"""Reclaim: delete the stored layers of a repository that can be fetched again.

The layers any version of the repository holds that are refetchable
(`lazyreg.db.space`: a layer with a source that no immediate repository
needs) are deleted, a batch at a time (`delete_blobs`); content, versions and
tags are untouched, so the next pull fetches them again on demand. A layer
being sent to a client or downloaded at that moment is skipped and counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from lazyreg.db.models import Repository
from lazyreg.db.space import (
    kept_for_immediate,
    reclaimable_page,
    reclaimable_totals,
    still_reclaimable,
)
from lazyreg.errors import NotFound
from lazyreg.services import Services
from lazyreg.space.deletion import Removed, delete_blobs
from lazyreg.space.progress import mib
from lazyreg.taskcontext import Progress

COUNTER = "layers"


async def reclaim(services: Services, progress: Progress, name: str,
                  in_use: Callable[[str], bool]) -> Removed:
    def load(session: Session) -> tuple[int, tuple[int, int], tuple[int, int]]:
        repository_id = session.scalar(select(Repository.id).where(Repository.name == name))
        if repository_id is None:
            raise NotFound("repository", name)
        return (repository_id, reclaimable_totals(session, repository_id),
                kept_for_immediate(session, repository_id))
    repository_id, (count, size), (kept, kept_bytes) = await services.db.read(load)
    progress.add_total(COUNTER, count)
    progress.message = f"deleting {count} stored layers ({mib(size)})"
    removed = Removed()
    after = 0
    while True:
        page = await services.db.read(lambda s: reclaimable_page(
            s, repository_id, after, services.settings.cleanup_batch_size))  # noqa: B023
        if not page:
            break
        after = page[-1][0]
        done = await delete_blobs(
            services, [d for _, d in page],
            lambda s, ds: still_reclaimable(s, repository_id, ds, time.time()), in_use)
        removed.add(done)
        progress.advance(COUNTER, done.count + done.skipped)
    message = f"reclaimed {removed.count} layers ({mib(removed.bytes)})"
    if kept:
        message += f"; kept {kept} ({mib(kept_bytes)}) that an immediate repository needs"
    if removed.skipped:
        message += f"; {removed.skipped} in use were left"
    progress.message = message
    return removed
