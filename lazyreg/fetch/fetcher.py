"""Single flight: at most one download per blob, in this process and across processes.

In this process, one `Flight` per digest: the first asker creates it and every
later one joins its `Growing`, with no await in between, so two askers can
never start two downloads. Across processes, the flight claims the blob's lease
(`lazyreg.db.leases`) and then either

- finds the blob stored meanwhile and serves it from storage;
- leads: downloads it (`Leader`), renewing the lease, then commits it and
  records its artifact (`keep`), or relays it only (`streamed`, or a blob that
  could not be stored: a full disk) and discards it;
- follows the process that holds the lease (`follower.follow`): from its
  staging when it is a process of this server, from its internal endpoint
  (`peer.py`) when the lease names another server of the cluster; when that
  one is lost (dead, expired, shut down) the flight claims again and takes
  over, its readers still attached, starting from the bytes the lost process
  staged when they can be read (its staging on a shared filesystem) and
  resuming upstream with Range from there.

A flight's lifetime is its own (`detached_fetch_timeout`): readers leaving do
not stop it. Its outcome is recorded on its `Growing`, for every reader alike.

`fetch_small` keeps these rules for a batch of small blobs (image configs) at
the database cost of two transactions for the batch instead of three per blob
(`batch.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lazyreg.db import artifacts, leases, sources
from lazyreg.db.models import utcnow
from lazyreg.fetch.blocks import BlockPool
from lazyreg.fetch.follower import LeaseStatus, follow
from lazyreg.fetch.growing import FetchStopped, Growing, Phase
from lazyreg.fetch.leader import Leader
from lazyreg.fetch.peer import PeerClient
from lazyreg.fetch.source import Source
from lazyreg.redact import redact
from lazyreg.services import Services
from lazyreg.storage.base import BlobReader, StagedBlob
from lazyreg.upstream.errors import (
    AuthError,
    DigestMismatch,
    NotFound,
    Unavailable,
    upstream_status,
)
from lazyreg.worker import WorkerId

log = logging.getLogger(__name__)

# Failures that say this source will not give the right bytes soon: skip it for a while.
COOLDOWN_ERRORS = (DigestMismatch, NotFound, AuthError)
MAX_HANDOVERS = 5  # claims of one flight (a takeover is one more)
MAX_CLAIM_RACES = 20  # PostgreSQL: another process inserted the lease row first
SMALL_BLOB = 4 * 1024 * 1024  # the largest blob `fetch_small` reads whole into memory


class Claim(Enum):
    OURS = "ours"
    HELD = "held"  # by another live process
    STORED = "stored"


@dataclass
class Flight:
    growing: Growing
    keep: bool  # commit to storage (on_demand, immediate), or relay only (streamed)
    kind: str  # the artifact kind recorded when kept
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    store_error: BaseException | None = None  # why a blob to keep was only relayed


def lease_key(digest: str) -> str:
    return leases.blob_lease(digest)


class Fetcher:
    def __init__(self, services: Services, peers: PeerClient | None = None) -> None:
        self.services = services
        self.peers = peers  # how to read other servers' downloads (None: not in a cluster)
        self._flights: dict[str, Flight] = {}
        # Commits of verified blobs under way: a stop waits for them (see `_lead`).
        self._committing: set[asyncio.Task[None]] = set()
        self.pool = BlockPool()  # the memory downloads receive into
        # Called with (digest, size, kind) after a blob was stored and recorded.
        self.on_stored: list[Callable[[str, int, str], None]] = []

    def in_flight(self, digest: str) -> Growing | None:
        flight = self._flights.get(digest)
        return flight.growing if flight is not None and not flight.growing.closed else None

    def progress(self) -> list[tuple[str, int, int]]:
        """(digest, size, bytes landed) of each download in flight here, led or followed."""
        return [(f.growing.digest, f.growing.size, f.growing.landed)
                for f in self._flights.values() if not f.growing.closed]

    def join(self, digest: str, size: int, sources: list[Source], *, keep: bool,
             kind: str = "layer") -> Growing:
        """The flight of `digest` to read from: the one in this process, or a new one."""
        flight = self._flights.get(digest)
        if flight is None or flight.growing.closed:
            # A closed flight may still be recording its end: the new one waits for it.
            previous = flight
            flight = Flight(Growing(digest, size), keep, kind)
            self._flights[digest] = flight
            flight.task = asyncio.create_task(self._run(flight, sources, previous))
        return flight.growing

    async def fetch(self, digest: str, size: int, sources: list[Source], *,
                    kind: str) -> None:
        """Download into storage (or join the download in flight) and wait until it is stored."""
        for _ in range(3):
            self.join(digest, size, sources, keep=True, kind=kind)
            flight = self._flights[digest]
            assert flight.task is not None
            await asyncio.shield(flight.task)
            growing = flight.growing
            if growing.phase is Phase.FAILED:
                assert growing.error is not None
                raise growing.error
            if await self.services.store.stat(digest) is not None:
                return
            if flight.store_error is not None:
                raise flight.store_error  # a full disk, say: the sync fails with it
            # We joined a relay (`streamed`) that stored nothing: download it again.
        raise Unavailable(f"could not store {digest}: it was only ever relayed")

    async def fetch_small(self, blobs: Mapping[str, int], sources: list[Source], *,
                          kind: str) -> dict[str, BaseException | None]:
        """Store each blob (digest -> size) as `fetch` does; the error of each (None: stored).

        Blobs of at most SMALL_BLOB bytes not in flight here are fetched as one
        batch; the others each the way of `fetch`.
        """
        batch: dict[str, Flight] = {}
        alone: dict[str, int] = {}
        for digest, size in blobs.items():
            if size > SMALL_BLOB or digest in self._flights:
                alone[digest] = size
                continue
            batch[digest] = Flight(Growing(digest, size), True, kind)
        if batch:
            from lazyreg.fetch.batch import run_batch  # it builds on this module

            self._flights.update(batch)
            task = asyncio.create_task(run_batch(self, batch, sources))
            for flight in batch.values():
                flight.task = task

        async def outcome(digest: str) -> BaseException | None:
            try:
                if digest in alone:
                    await self.fetch(digest, alone[digest], sources, kind=kind)
                    return None
                task = batch[digest].task
                assert task is not None
                await asyncio.shield(task)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
                return FetchStopped(f"the fetch of {digest} stopped")  # shutting down
            except Exception as exc:
                return exc
            growing = batch[digest].growing
            if growing.phase is Phase.VERIFIED:
                return None
            return growing.error or FetchStopped(f"the fetch of {digest} stopped")
        return dict(zip(blobs, await asyncio.gather(*(outcome(d) for d in blobs)),
                        strict=True))

    # ------------------------------------------------------------ one flight

    async def _run(self, flight: Flight, sources: list[Source], previous: Flight | None) -> None:
        growing = flight.growing
        try:
            if previous is not None and previous.task is not None:
                await asyncio.wait([previous.task])
            async with asyncio.timeout(self.services.settings.detached_fetch_timeout):
                await self._fill(flight, sources)
        except asyncio.CancelledError:
            raise  # shutting down: `close` below tells readers the fetch stopped
        except Exception as exc:  # recorded on the growing blob, for every reader
            growing.fail(exc)
            status = upstream_status(exc)
            log.warning("fetch of %s failed (upstream status %s): %s", growing.digest,
                        status or "none", exc, extra={"fields": {
                            "digest": growing.digest, "upstream_status": status}})
        finally:
            growing.close()
            if self._flights.get(growing.digest) is flight:
                del self._flights[growing.digest]

    async def _fill(self, flight: Flight, sources: list[Source]) -> None:
        growing = flight.growing
        lost: WorkerId | None = None  # the last process whose download of it was lost
        for _ in range(MAX_HANDOVERS):
            claim, holder = await self._claim(growing.digest)
            if claim is Claim.STORED:
                reader = await self.services.store.open(growing.digest)
                if reader is not None:
                    growing.set_source(reader, reader.landed())
                    growing.verified()
                    return
            elif claim is Claim.OURS:
                seed = None
                if lost is not None:
                    seed = await self.services.store.open_staging(lost, growing.digest)
                await self._lead(flight, sources, seed)
                return
            else:
                assert holder is not None and holder.owner is not None
                owner = holder.owner
                if await follow(growing, self.services.store, owner,
                                self._source_opener(growing, holder),
                                functools.partial(self._status, growing.digest, owner)):
                    return
                lost = owner
                log.info("download of %s by %s was lost; taking over", growing.digest, owner)
        raise Unavailable(f"the download of {growing.digest} changed hands too often")

    def _source_opener(self, growing: Growing, holder: leases.LeaseView
                       ) -> Callable[[], Awaitable[BlobReader | None]]:
        """Where this process reads the holder's download: its internal endpoint when it is
        another server of the cluster, else its staging (a process sharing our storage)."""
        url, peers = holder.url, self.peers
        if url is not None and peers is not None and url != self.services.cluster_url:
            log.info("following the download of %s by %s at %s", growing.digest,
                     holder.owner, url)

            async def from_peer() -> BlobReader:
                return peers.open(url, growing)
            return from_peer
        owner = holder.owner
        assert owner is not None
        return functools.partial(self.services.store.open_staging, owner, growing.digest)

    async def _claim(self, digest: str) -> tuple[Claim, leases.LeaseView | None]:
        services = self.services
        key, me, ttl = lease_key(digest), services.worker, services.settings.lease_ttl
        url = services.cluster_url

        def claim(session: Session) -> tuple[bool, leases.LeaseView | None]:
            # The lease first, then the artifact row: a process that read "not stored"
            # before locking could find the lease finished by a leader that stored the
            # blob meanwhile, and download it again (PostgreSQL's READ COMMITTED lets
            # each statement see what committed before it, so the order is the fix).
            held = leases.claim(session, key, me, ttl, url)
            return artifacts.is_stored(session, digest), held

        for _ in range(MAX_CLAIM_RACES):
            try:
                recorded, held = await services.db.write(claim)
            except IntegrityError:
                continue
            if held is not None:
                return Claim.HELD, held  # a live lease names its owner (see `takeable`)
            # A row whose file is gone is fetched again.
            if recorded and await services.store.stat(digest) is not None:
                await self._finish_lease(key, verified=True)
                return Claim.STORED, None
            return Claim.OURS, None
        raise Unavailable(f"could not claim the download of {digest}")

    async def _status(self, digest: str, owner: WorkerId) -> LeaseStatus:
        key = lease_key(digest)

        def status(session: Session) -> LeaseStatus:
            # The owner's lease first: while it runs, an artifact row is one whose object
            # went missing (the owner is fetching it again), not the owner's result.
            lease = leases.get(session, key)
            if lease is not None and lease.owner == owner:
                if lease.state is leases.LeaseState.DONE:
                    return LeaseStatus.VERIFIED
                if lease.state is leases.LeaseState.FAILED:
                    return LeaseStatus.FAILED
                if not lease.takeable(time.time()):
                    return LeaseStatus.RUNNING
            if artifacts.is_stored(session, digest):
                return LeaseStatus.VERIFIED  # finished, and the lease moved on or was purged
            return LeaseStatus.LOST
        return await self.services.db.read(status)

    async def _lead(self, flight: Flight, sources: list[Source],
                    seed: BlobReader | None = None) -> None:
        key = lease_key(flight.growing.digest)
        flight.growing.led = True
        renewer = asyncio.create_task(self._keep_lease(key))
        verified: bool | None = False  # None: given up (shutdown), for others to take over
        finished = False  # the lease was finished with the artifact row
        try:
            leader = Leader(flight.growing, self.services.store, self._source_failed,
                            self.pool, seed)
            staged = await leader.run(sources)
            if staged is None:
                # Verified, but not stored: our readers have it; other processes'
                # readers, who read the (now removed) staging file, must not trust it.
                flight.store_error = leader.store_error
                return
            verified = True
            if flight.keep:
                # Verified bytes are stored whole: the file and its row together, even when
                # a stop cancels this task meanwhile (`close` waits for the commit), never a
                # stored file without its row for the next start to repair.
                commit = asyncio.create_task(self._commit(staged, flight, key))
                self._committing.add(commit)
                commit.add_done_callback(self._committing.discard)
                finished = True  # the commit finishes the lease, whatever befalls this task
                await asyncio.shield(commit)
            else:
                await staged.abort()  # relayed: readers keep what they hold
                flight.growing.close()
        except asyncio.CancelledError:
            if not verified:
                verified = None
            raise
        finally:
            renewer.cancel()
            if not finished:
                await self._finish_lease(key, verified)

    async def _commit(self, staged: StagedBlob, flight: Flight, key: str) -> None:
        try:
            location = await staged.commit()
            # Readers still sending keep their descriptor; a new one reads storage.
            flight.growing.close()
            await self._record(staged, flight.kind, location, key)
        except BaseException:
            flight.growing.close()
            await self._finish_lease(key, True)
            raise

    async def _keep_lease(self, key: str) -> None:
        services = self.services
        me, ttl = services.worker, services.settings.lease_ttl
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                await services.db.write(lambda s: leases.renew(s, key, me, ttl))
            except Exception as exc:  # the next renewal may work; expiry is the backstop
                log.warning("could not renew lease %s: %s", key, exc)

    async def _finish_lease(self, key: str, verified: bool | None) -> None:
        services = self.services
        me, ttl = services.worker, services.settings.lease_ttl

        def finish(session: Session) -> None:
            if verified is None:
                leases.release(session, key, me)
            else:
                leases.finish(session, key, me, ttl, verified)
        try:
            await asyncio.shield(services.db.write(finish))
        except Exception as exc:  # followers fall back on the lease's expiry
            log.warning("could not finish lease %s: %s", key, exc)

    async def _record(self, staged: StagedBlob, kind: str, location: str, key: str) -> None:
        """The artifact row, and the lease finished, in one transaction."""
        record = artifacts.NewArtifact(staged.digest, staged.size, kind, location)
        me, ttl = self.services.worker, self.services.settings.lease_ttl

        def record_and_finish(session: Session) -> None:
            artifacts.record_artifacts(session, [record])
            leases.finish(session, key, me, ttl, True)
        try:
            await self.services.db.write(record_and_finish)
        except Exception:
            # No row (the database's disk is full, say): no file either, so that
            # storage and database agree, and the next pull fetches it again.
            with contextlib.suppress(OSError):
                await self.services.store.delete(staged.digest)
            raise
        for hook in self.on_stored:
            hook(staged.digest, staged.size, kind)

    async def _source_failed(self, source: Source, exc: BaseException) -> None:
        log.warning("source %s/%s failed for a blob: %s", source.remote_name,
                    source.upstream_name, exc)
        source_id = source.source_id
        if source_id is None or not isinstance(exc, COOLDOWN_ERRORS):
            return
        until = utcnow() + timedelta(seconds=self.services.settings.source_cooldown)
        error = redact(f"{type(exc).__name__}: {exc}")
        try:
            await self.services.db.write(
                lambda s: sources.cool_down(s, source_id, error, until))
        except Exception as err:
            log.warning("could not record the failure of source %s: %s", source_id, err)

    async def close(self) -> None:
        """Stop downloads and give up this process's leases, so others take over at once."""
        tasks = [f.task for f in self._flights.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*self._committing, return_exceptions=True)
        me = self.services.worker
        with contextlib.suppress(Exception):
            await self.services.db.write(lambda s: leases.release_all(s, me))
