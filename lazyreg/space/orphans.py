"""Orphan cleanup: content and artifacts that no repository version holds any more.

Content goes first (`lazyreg.db.orphans`: tags, then manifests, then blobs,
each with the rows that point at it), then the artifacts left without content
(`delete_blobs`: rows, then files). What is younger than the protection time
stays: the content and artifacts a sync running meanwhile stores, and the
artifacts it found stored and reuses (marked used, `lazyreg.db.usage`); the
caller flushes this process's usage log first so that those marks count.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from lazyreg.db import orphans as q
from lazyreg.db.models import utcnow
from lazyreg.services import Services
from lazyreg.space.deletion import Removed, delete_blobs
from lazyreg.space.progress import mib
from lazyreg.taskcontext import Progress

MAX_PASSES = 64  # manifest passes: each frees the children of the lists it deleted


@dataclass
class Cleaned:
    content: dict[str, int] = field(default_factory=lambda: dict.fromkeys(q.KINDS, 0))
    artifacts: Removed = field(default_factory=Removed)


async def cleanup_orphans(services: Services, progress: Progress, protection: float,
                          in_use: Callable[[str], bool]) -> Cleaned:
    db, batch = services.db, services.settings.cleanup_batch_size
    cutoff, cutoff_ts = utcnow() - timedelta(seconds=protection), time.time() - protection
    cleaned = Cleaned()
    for kind in q.KINDS:
        counter = kind + "s"
        progress.message = f"deleting orphan {counter}"
        for _ in range(MAX_PASSES if kind == "manifest" else 1):
            found = await db.read(lambda s: q.count_orphans(s, kind, cutoff))  # noqa: B023
            if not found:
                break
            progress.add_total(counter, found)
            after, deleted = 0, 0
            while True:
                ids = await db.read(
                    lambda s: q.orphan_ids(s, kind, cutoff, after, batch))  # noqa: B023
                if not ids:
                    break
                after = ids[-1]
                n = await db.write(lambda s: q.delete_orphans(s, kind, ids, cutoff))  # noqa: B023
                deleted += n
                progress.advance(counter, n)
            cleaned.content[kind] += deleted
            if not deleted:
                break
    progress.message = "deleting orphan artifacts"
    progress.add_total("artifacts", await db.read(
        lambda s: q.count_orphan_artifacts(s, cutoff, cutoff_ts)))
    after = 0
    while True:
        page = await db.read(lambda s: q.orphan_artifacts(
            s, cutoff, cutoff_ts, after, batch))  # noqa: B023
        if not page:
            break
        after = page[-1][0]
        done = await delete_blobs(
            services, [d for _, d in page],
            lambda s, ds: q.still_orphan_artifacts(s, ds, cutoff, cutoff_ts), in_use)
        cleaned.artifacts.add(done)
        progress.advance("artifacts", done.count + done.skipped)
    c = cleaned.content
    progress.message = (f"removed {c['tag']} tags, {c['manifest']} manifests, {c['blob']} blobs"
                        f" and {cleaned.artifacts.count} artifacts"
                        f" ({mib(cleaned.artifacts.bytes)}) no version held for {protection:g}s")
    if cleaned.artifacts.skipped:
        progress.message += f"; {cleaned.artifacts.skipped} in use were left"
    return cleaned
