"""The bounded cache: stored blobs that can be fetched again stay under `max_cache_bytes`.

One background loop per server process (`SpaceKeeper`):

- every `usage_flush_interval` seconds, and soon after the fetcher stores a
  blob (`stored`, its hook), it writes the usage log (`lazyreg.db.usage`);
- when a bound is set, it keeps an estimate of the refetchable bytes: the
  last total added up in the database (`lazyreg.db.space`; a scan of every
  stored layer, so done every REFRESH_ROUNDS rounds, or when the estimate says
  the bound is passed) plus what this process stored since. Other processes'
  blobs count from the next total on;
- over the bound, it evicts refetchable layers, least recently used first, a
  batch at a time (`lazyreg.space.deletion`), until they are at 90% of it.
  When what is left over the bound is all in use, it tries again once a
  transfer of this process has ended, a blob was stored, or the next total
  is due, not at every round.

Never evicted: the blobs of immediate repositories, configs and manifests
(none is refetchable); a blob being sent to a client, by this process (its
usage log) or by another one (`busy_until`, renewed at each flush while the
transfer lasts); a download in flight (not stored yet; a blob whose download
lease is held is skipped). One process evicts at a time, whichever holds the
`cache:evict` lease; one that finds it held leaves the work to the holder.

What eviction did is kept in `stats` for the status API, and each blob evicted
is reported to the `on_evict` hooks (digest, size), for metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from lazyreg.db import leases
from lazyreg.db.space import StoredBytes, eviction_candidates, still_evictable, stored_bytes
from lazyreg.services import Services
from lazyreg.space.deletion import Removed, delete_blobs

log = logging.getLogger(__name__)

EVICT_LEASE = "cache:evict"
LOW_WATER = 0.9  # eviction stops at this share of the bound
MIN_GAP = 0.5  # seconds between two rounds woken by stores
BUSY_FOR = 3  # a busy mark lasts this many flush intervals, renewed halfway
REFRESH_ROUNDS = 12  # flush intervals between two totals added up in the database


@dataclass
class EvictionStats:
    running: bool = False
    runs: int = 0  # evictions that removed something
    blobs: int = 0  # evicted in all, by this process
    bytes: int = 0
    last_finished: float | None = None  # Unix time
    last_blobs: int = 0
    last_bytes: int = 0
    last_error: str | None = None


class SpaceKeeper:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.usage = services.usage
        self.stats = EvictionStats()
        # Called with (digest, size) for each blob evicted: a metrics hook.
        self.on_evict: list[Callable[[str, int], None]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._estimate: int | None = None  # refetchable bytes: last total + stored since
        self._refreshed = -math.inf  # monotonic time of the last total
        self._stores = 0
        # (stores, transfers ended) when a round left the cache over its bound because
        # what was left was in use: nothing to try again until one of them moves.
        self._stuck_at: tuple[int, int] | None = None

    @property
    def bound(self) -> int | None:
        return self.services.settings.max_cache_bytes

    @property
    def interval(self) -> float:
        return self.services.settings.usage_flush_interval

    def start(self) -> None:
        self._wake.set()  # a first look at once: the bound may have been lowered
        self._task = asyncio.create_task(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.flush()

    def stored(self, digest: str, size: int, kind: str) -> None:
        """The fetcher stored a blob: the cache may be over its bound now."""
        self._stores += 1
        if self._estimate is not None and kind == "layer":
            self._estimate += size
        if self.bound is not None:
            self._wake.set()

    async def flush(self) -> None:
        await self.usage.flush(self.services.db, busy_for=BUSY_FOR * self.interval)

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            try:
                await self.flush()
                if self.bound is not None:
                    await self.evict()
            except Exception as exc:  # the next round tries again
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("disk space round failed: %s", exc)
            await asyncio.sleep(MIN_GAP)

    async def totals(self) -> StoredBytes:
        return await self.services.db.read(stored_bytes)

    def _needs_total(self, bound: int) -> bool:
        if time.monotonic() - self._refreshed > REFRESH_ROUNDS * self.interval:
            return True
        if self._estimate is not None and self._estimate <= bound:
            return False
        return self._stuck_at != (self._stores, self.usage.sends_ended)

    async def evict(self) -> Removed | None:
        """Evict down to 90% of the bound if over it; None when there was nothing to do."""
        bound = self.bound
        if bound is None or not self._needs_total(bound):
            return None
        moves = (self._stores, self.usage.sends_ended)
        totals = await self.totals()
        self._estimate, self._refreshed = totals.evictable_bytes, time.monotonic()
        if totals.evictable_bytes <= bound:
            self._stuck_at = None
            return None
        services, me = self.services, self.services.worker
        ttl = services.settings.lease_ttl
        held = await services.db.write(lambda s: leases.claim(s, EVICT_LEASE, me, ttl))
        if held is not None:
            self._stuck_at = moves  # another process is evicting
            return None
        self.stats.running = True
        removed = Removed()
        try:
            await self._evict(totals.evictable_bytes - int(bound * LOW_WATER), removed)
        finally:
            self.stats.running = False
            with contextlib.suppress(Exception):
                await asyncio.shield(services.db.write(
                    lambda s: leases.release(s, EVICT_LEASE, me)))
        self._estimate -= removed.bytes
        self._stuck_at = moves if self._estimate > bound else None
        self.stats.last_finished = time.time()
        self.stats.last_blobs, self.stats.last_bytes = removed.count, removed.bytes
        if removed.count:
            self.stats.runs += 1
            log.info("cache over %d bytes: evicted %d blobs (%d bytes)", bound, removed.count,
                     removed.bytes)
        return removed

    async def _evict(self, need: int, removed: Removed) -> None:
        services, usage = self.services, self.usage
        me, ttl = services.worker, services.settings.lease_ttl
        batch = services.settings.cleanup_batch_size
        after: tuple[float, int] | None = None
        while need > 0:
            now = time.time()
            page = await services.db.read(
                lambda s: eviction_candidates(s, now, after, batch))  # noqa: B023
            if not page:
                return  # what is left is in use: over the bound until it is not
            chosen: list[str] = []
            chosen_bytes = 0
            for candidate in page:
                after = (candidate.used, candidate.id)
                if usage.is_sending(candidate.digest):
                    continue
                chosen.append(candidate.digest)
                chosen_bytes += candidate.size
                if chosen_bytes >= need:
                    break
            done = await delete_blobs(services, chosen,
                                      lambda s, ds: still_evictable(s, ds, time.time()),
                                      usage.is_sending)
            removed.add(done)
            need -= done.bytes
            self.stats.blobs += done.count
            self.stats.bytes += done.bytes
            for hook in self.on_evict:
                for digest, size in done.gone:
                    hook(digest, size)
            await services.db.write(lambda s: leases.claim(s, EVICT_LEASE, me, ttl))  # renew
