"""What a sync puts in storage: image configs through the fetcher, manifests whole.

- Configs are blobs like layers: `Configs` fetches them with the fetcher, the
  path every blob download takes (one download per blob across processes,
  verified, committed, its artifact recorded), once per sync however many
  manifests name one, in batches (`Fetcher.fetch_small`). Configs over
  CONFIG_LIMIT are left to be fetched on demand, like layers.
- Manifests were fetched and verified by the sync (`closure.py`): their bytes
  are put in storage as they come (`Manifests`), and their artifacts recorded
  with `record_artifacts`, whether or not a version follows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from lazyreg.db.artifacts import NewArtifact, record_artifacts
from lazyreg.fetch import Fetcher, Source
from lazyreg.oci.manifest import Descriptor
from lazyreg.services import Services
from lazyreg.sync.record import FetchedManifest
from lazyreg.upstream.client import CONFIG_LIMIT

PUT_WORKERS = 8  # manifests written to storage at once
BATCHES = 2  # config batches in flight at once
BATCH_SIZE = 500  # configs in one batch (two database transactions)


def configs_of(manifests: Iterable[FetchedManifest]) -> dict[str, Descriptor]:
    """The config blobs a sync stores for these manifests, by digest."""
    return {m.parsed.config.digest: m.parsed.config for m in manifests
            if m.parsed.config is not None and m.parsed.config.size <= CONFIG_LIMIT}


class Configs:
    """Fetches the configs of one source into storage, each once (the first outcome is kept).

    Configs asked for by concurrent callers (the tags of a sync) are fetched
    together, with `Fetcher.fetch_small`: whatever is asked while BATCHES
    batches are in flight waits, then goes in the next batch, up to BATCH_SIZE.
    """

    def __init__(self, fetcher: Fetcher, source: Source,
                 on_new: Callable[[], None] = lambda: None,
                 on_stored: Callable[[], None] = lambda: None) -> None:
        self.fetcher = fetcher
        self.source = source
        self._on_new = on_new
        self._on_stored = on_stored
        self._fetches: dict[str, asyncio.Future[None]] = {}
        self._queue: dict[str, Descriptor] = {}  # asked for, in no batch yet
        self._batches: set[asyncio.Task[None]] = set()

    @property
    def fetched(self) -> set[str]:
        """Digests of the configs stored by this object's fetches."""
        return {d for d, f in self._fetches.items()
                if f.done() and not f.cancelled() and f.exception() is None}

    async def store(self, manifests: Iterable[FetchedManifest]) -> None:
        """Fetch the configs of `manifests`; raises the first failure among them."""
        waiting = []
        configs = configs_of(manifests)
        # Those stored before are reused: marked used, orphan cleanup keeps them.
        self.fetcher.services.usage.used(configs)
        for digest, config in configs.items():
            future = self._fetches.get(digest)
            if future is None:
                self._on_new()
                future = asyncio.get_running_loop().create_future()
                self._fetches[digest] = future
                self._queue[digest] = config
            waiting.append(future)
        self._start_batches()
        for future in waiting:
            await asyncio.shield(future)

    def _start_batches(self) -> None:
        while self._queue and len(self._batches) < BATCHES:
            digests = list(self._queue)[:BATCH_SIZE]
            batch = {d: self._queue.pop(d) for d in digests}
            task = asyncio.create_task(self._fetch(batch))
            self._batches.add(task)
            task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: its waiters got it through their futures
        self._start_batches()

    async def _fetch(self, batch: dict[str, Descriptor]) -> None:
        try:
            errors = await self.fetcher.fetch_small({d: c.size for d, c in batch.items()},
                                                    [self.source], kind="config")
        except BaseException as exc:
            for digest in batch:
                if not self._fetches[digest].done():
                    self._fetches[digest].set_exception(
                        exc if isinstance(exc, Exception) else asyncio.CancelledError())
            raise
        for digest, error in errors.items():
            if error is None:
                self._fetches[digest].set_result(None)
                self._on_stored()
            else:
                self._fetches[digest].set_exception(error)

    async def close(self) -> None:
        """Stop the fetches still running (a sync that gave up) and collect their errors."""
        self._queue.clear()
        for task in self._batches:
            task.cancel()
        await asyncio.gather(*self._batches, return_exceptions=True)
        for future in self._fetches.values():
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()  # retrieved: no "never retrieved" noise


class Manifests:
    """Puts fetched manifests in storage as they come, PUT_WORKERS at once.

    A manifest stored before is put again (the same bytes, replaced atomically):
    cheaper than asking storage first for each, and it mends a lost file.
    `finish` waits for every put and records the artifacts of what was stored,
    also when a put failed (then raised); `close` stops the puts still waiting
    and records the rest the same way.
    """

    def __init__(self, services: Services) -> None:
        self.services = services
        self._slots = asyncio.Semaphore(PUT_WORKERS)
        self._puts: dict[str, asyncio.Task[None]] = {}
        self._stored: list[NewArtifact] = []

    def add(self, manifests: Iterable[FetchedManifest]) -> None:
        manifests = list(manifests)
        # One stored before keeps its artifact row (and its `last_used`): marked
        # used, so that orphan cleanup keeps it while the version is not written.
        self.services.usage.used(m.digest for m in manifests)
        for m in manifests:
            if m.digest not in self._puts:
                self._puts[m.digest] = asyncio.create_task(self._put(m))

    async def _put(self, m: FetchedManifest) -> None:
        async with self._slots:
            location = await self.services.store.put(m.digest, m.data)
        self._stored.append(NewArtifact(m.digest, len(m.data), "manifest", location))

    async def finish(self) -> None:
        try:
            await asyncio.gather(*self._puts.values())
        finally:
            await self.close()

    async def close(self) -> None:
        for task in self._puts.values():
            task.cancel()
        await asyncio.gather(*self._puts.values(), return_exceptions=True)
        stored, self._stored = self._stored, []
        if stored:
            await self.services.db.write(lambda s: record_artifacts(s, stored))


async def store_manifests(services: Services, manifests: Iterable[FetchedManifest]) -> None:
    """Put the manifests' bytes in storage and record their artifacts (see `Manifests`)."""
    store = Manifests(services)
    store.add(manifests)
    await store.finish()
