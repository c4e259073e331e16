"""What dead workers left staged: swept at start-up and every `staging_sweep_interval`.

The store removes it (`BlobStore.clean_staging`); this module tells it which
downloads are alive, from the download leases in the database (any process's,
this one's included): an object store's multipart upload is kept while a live
worker holds its blob's lease, whatever its age, and aborted once that lease is
over or its owner dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from lazyreg.db import leases
from lazyreg.services import Services
from lazyreg.storage.base import LiveDownloads

log = logging.getLogger(__name__)


def live_downloads(services: Services) -> LiveDownloads:
    async def live(digests: list[str]) -> dict[str, bool]:
        keys = {leases.blob_lease(d): d for d in digests}
        found = await services.db.read(lambda s: leases.liveness(s, list(keys)))
        return {keys[k]: alive for k, alive in found.items()}
    return live


async def sweep(services: Services) -> int:
    """One sweep; the number of staged blobs removed."""
    return await services.store.clean_staging(live_downloads(services))


class StagingSweeper:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.services.settings.staging_sweep_interval)
            try:
                removed = await sweep(self.services)
                if removed:
                    log.info("staging sweep: removed %d blobs staged by dead workers", removed)
            except Exception as exc:  # the next sweep tries again
                log.warning("staging sweep failed: %s", exc)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
