"""Single flight: at most one download per blob, in this process and across processes.

In this process, one `Flight` per digest: the first asker creates it and every
later one joins its `Growing`, with no await in between, so two askers can
never start two downloads. Across processes, the flight claims the blob's lease
(`lazyreg.db.leases`) and then either

- finds the blob stored meanwhile and serves it from storage;
- leads: downloads it (`Leader`), renewing the lease, then commits it and
  records its artifact (`keep`), or relays it only (`streamed`) and discards it;
- follows the process that holds the lease (`follower.follow`); when that one
  is lost (dead, expired, shut down) the flight claims again and takes over,
  its readers still attached.

A flight's lifetime is its own (`detached_fetch_timeout`): readers leaving do
not stop it. Its outcome is recorded on its `Growing`, for every reader alike.

`fetch_small` keeps these rules for a batch of small blobs (image configs) at
the database cost of two transactions for the batch instead of three per blob:
one claims every lease, one records the artifacts and finishes the leases. Each
blob still has its flight, which readers in this process join; a claimed blob
is read whole into memory (`small.py`) and `put` in storage, then readers read
it from there; one whose lease another process holds goes the per-blob way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lazyreg.db import artifacts, leases, sources
from lazyreg.db.models import utcnow
from lazyreg.fetch.follower import LeaseStatus, follow
from lazyreg.fetch.growing import FetchStopped, Growing, Phase
from lazyreg.fetch.leader import Leader
from lazyreg.fetch.small import read_whole
from lazyreg.fetch.source import Source
from lazyreg.redact import redact
from lazyreg.services import Services
from lazyreg.storage import base as storage
from lazyreg.storage.base import StagedBlob
from lazyreg.upstream.errors import (
    AuthError,
    DigestMismatch,
    NotFound,
    Unavailable,
    UpstreamError,
)
from lazyreg.worker import WorkerId

log = logging.getLogger(__name__)

# Failures that say this source will not give the right bytes soon: skip it for a while.
COOLDOWN_ERRORS = (DigestMismatch, NotFound, AuthError)
MAX_HANDOVERS = 5  # claims of one flight (a takeover is one more)
MAX_CLAIM_RACES = 20  # PostgreSQL: another process inserted the lease row first
SMALL_BLOB = 4 * 1024 * 1024  # the largest blob `fetch_small` reads whole into memory
SMALL_AT_ONCE = 8  # blobs of one batch read or being stored at once (memory: 8 x SMALL_BLOB)


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


def lease_key(digest: str) -> str:
    return f"blob:{digest}"


class Fetcher:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._flights: dict[str, Flight] = {}

    def in_flight(self, digest: str) -> Growing | None:
        flight = self._flights.get(digest)
        return flight.growing if flight is not None and not flight.growing.closed else None

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
            if flight.keep or await self.services.store.stat(digest) is not None:
                return
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
            self._flights.update(batch)
            task = asyncio.create_task(self._run_batch(batch, sources))
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

    async def _run_batch(self, flights: dict[str, Flight], sources: list[Source]) -> None:
        services = self.services
        ours: set[str] = set()  # digests whose lease we hold
        outcomes: dict[str, bool] = {}  # lease key -> verified
        stored: list[artifacts.NewArtifact] = []
        at_once = asyncio.Semaphore(SMALL_AT_ONCE)

        async def one(flight: Flight, held: bool) -> None:
            growing = flight.growing
            try:
                if held or growing.digest not in ours:
                    await self._fill(flight, sources)  # leased elsewhere, or a row without file
                    return
                try:
                    async with at_once:
                        location = await self._put_small(growing.digest, growing.size,
                                                         sources)
                except asyncio.CancelledError:
                    raise  # given up: released below, for another process to take
                except BaseException:
                    outcomes[lease_key(growing.digest)] = False
                    raise
                outcomes[lease_key(growing.digest)] = True
                stored.append(artifacts.NewArtifact(growing.digest, growing.size, flight.kind,
                                                    location))
                if growing.readers:  # else nobody needs a reader: later ones read storage
                    reader = await services.store.open(growing.digest)
                    if reader is None:
                        raise Unavailable(f"{growing.digest} is gone from storage")
                    growing.set_source(reader, reader.landed())
                growing.verified()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # recorded on the growing blob, for every reader
                growing.fail(exc)
                log.warning("fetch of %s failed: %s", growing.digest, exc)
            finally:
                growing.close()

        renewer: asyncio.Task[None] | None = None
        try:
            async with asyncio.timeout(services.settings.detached_fetch_timeout):
                held, recorded = await self._claim_many(list(flights))
                ours.update(d for d in flights if d not in held and d not in recorded)
                for digest in recorded:
                    if await services.store.stat(digest) is None:
                        continue  # a row whose file is gone: fetched again, per blob
                    reader = await services.store.open(digest)
                    if reader is not None:
                        flights[digest].growing.set_source(reader, reader.landed())
                        flights[digest].growing.verified()
                        flights[digest].growing.close()
                renewer = asyncio.create_task(self._keep_leases(sorted(ours)))
                await asyncio.gather(*(one(f, d in held) for d, f in flights.items()
                                       if not f.growing.closed))
        except asyncio.CancelledError:
            raise  # shutting down: readers are told the fetch stopped
        except Exception as exc:  # the claim failed, or the batch timed out
            for flight in flights.values():
                flight.growing.fail(exc)
            log.warning("fetch of %d blobs failed: %s", len(flights), exc)
        finally:
            if renewer is not None:
                renewer.cancel()
            for flight in flights.values():
                flight.growing.close()
            try:
                # Recorded before the flights go: a new fetch of one of them finds its row.
                await self._end_batch(ours, outcomes, stored)
            finally:
                for flight in flights.values():
                    if self._flights.get(flight.growing.digest) is flight:
                        del self._flights[flight.growing.digest]

    async def _claim_many(self, digests: list[str]) -> tuple[set[str], set[str]]:
        """Claim the leases of the digests not recorded as stored: (held elsewhere, recorded)."""
        services = self.services
        me, ttl = services.worker, services.settings.lease_ttl

        def claim(session: Session) -> tuple[set[str], set[str]]:
            recorded = artifacts.stored_digests(session, digests)
            held = leases.claim_many(session, [lease_key(d) for d in digests
                                               if d not in recorded], me, ttl)
            return {d for d in digests if lease_key(d) in held}, recorded

        for _ in range(MAX_CLAIM_RACES):
            try:
                return await services.db.write(claim)
            except IntegrityError:
                continue
        raise Unavailable(f"could not claim the downloads of {len(digests)} blobs")

    async def _put_small(self, digest: str, size: int, sources: list[Source]) -> str:
        """Store the blob from the first source that sends its bytes; its location.

        Failed sources are cooled down, as the per-blob way does.
        """
        last: BaseException | None = None
        for source in sources:
            try:
                data = await read_whole(source, digest, size,
                                        self.services.settings.upstream_read_timeout)
                try:
                    return await self.services.store.put(digest, data)
                except storage.DigestMismatch as exc:
                    raise DigestMismatch(f"upstream sent the wrong bytes: {exc}") from exc
            except (UpstreamError, OSError) as exc:
                last = exc
                await self._source_failed(source, exc)
        raise last or Unavailable(f"no upstream source for {digest}")

    async def _keep_leases(self, digests: list[str]) -> None:
        services = self.services
        me, ttl = services.worker, services.settings.lease_ttl

        def renew(session: Session) -> None:
            for digest in digests:
                leases.renew(session, lease_key(digest), me, ttl)
        while digests:
            await asyncio.sleep(ttl / 3)
            try:
                await services.db.write(renew)
            except Exception as exc:  # the next renewal may work; expiry is the backstop
                log.warning("could not renew the leases of a batch: %s", exc)

    async def _end_batch(self, ours: set[str], outcomes: dict[str, bool],
                         stored: list[artifacts.NewArtifact]) -> None:
        """Record what was stored and finish the leases (released if never finished)."""
        services = self.services
        me, ttl = services.worker, services.settings.lease_ttl
        given_up = [lease_key(d) for d in ours if lease_key(d) not in outcomes]

        def end(session: Session) -> None:
            artifacts.record_artifacts(session, stored)
            leases.finish_many(session, outcomes, me, ttl)
            leases.release_many(session, given_up, me)
        if not (stored or outcomes or given_up):
            return
        try:
            await asyncio.shield(services.db.write(end))
        except Exception as exc:  # followers fall back on the leases' expiry
            log.warning("could not record a batch of %d blobs: %s", len(stored), exc)

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
            log.warning("fetch of %s failed: %s", growing.digest, exc)
        finally:
            growing.close()
            if self._flights.get(growing.digest) is flight:
                del self._flights[growing.digest]

    async def _fill(self, flight: Flight, sources: list[Source]) -> None:
        growing = flight.growing
        for _ in range(MAX_HANDOVERS):
            claim, holder = await self._claim(growing.digest)
            if claim is Claim.STORED:
                reader = await self.services.store.open(growing.digest)
                if reader is not None:
                    growing.set_source(reader, reader.landed())
                    growing.verified()
                    return
            elif claim is Claim.OURS:
                await self._lead(flight, sources)
                return
            else:
                assert holder is not None
                if await follow(growing, self.services.store, holder,
                                functools.partial(self._status, growing.digest, holder)):
                    return
                log.info("download of %s by %s was lost; taking over", growing.digest, holder)
        raise Unavailable(f"the download of {growing.digest} changed hands too often")

    async def _claim(self, digest: str) -> tuple[Claim, WorkerId | None]:
        services = self.services
        key, me, ttl = lease_key(digest), services.worker, services.settings.lease_ttl

        def claim(session: Session) -> tuple[bool, leases.LeaseView | None]:
            return artifacts.is_stored(session, digest), leases.claim(session, key, me, ttl)

        for _ in range(MAX_CLAIM_RACES):
            try:
                recorded, held = await services.db.write(claim)
            except IntegrityError:
                continue
            if held is not None:
                return Claim.HELD, held.owner
            # A row whose file is gone is fetched again.
            if recorded and await services.store.stat(digest) is not None:
                await self._finish_lease(key, verified=True)
                return Claim.STORED, None
            return Claim.OURS, None
        raise Unavailable(f"could not claim the download of {digest}")

    async def _status(self, digest: str, owner: WorkerId) -> LeaseStatus:
        key = lease_key(digest)

        def status(session: Session) -> LeaseStatus:
            if artifacts.is_stored(session, digest):
                return LeaseStatus.VERIFIED
            lease = leases.get(session, key)
            if lease is None or lease.owner != owner:
                return LeaseStatus.LOST
            if lease.state is leases.LeaseState.DONE:
                return LeaseStatus.VERIFIED
            if lease.state is leases.LeaseState.FAILED:
                return LeaseStatus.FAILED
            return LeaseStatus.LOST if lease.takeable(time.time()) else LeaseStatus.RUNNING
        return await self.services.db.read(status)

    async def _lead(self, flight: Flight, sources: list[Source]) -> None:
        key = lease_key(flight.growing.digest)
        renewer = asyncio.create_task(self._keep_lease(key))
        verified: bool | None = False  # None: given up (shutdown), for others to take over
        try:
            staged = await Leader(flight.growing, self.services.store,
                                  self._source_failed).run(sources)
            verified = True
            if flight.keep:
                location = await staged.commit()
            else:
                await staged.abort()  # relayed: readers keep what they hold
            # Readers still sending keep their descriptor; a new one reads storage.
            flight.growing.close()
            if flight.keep:
                await self._record(staged, flight.kind, location)
        except asyncio.CancelledError:
            if not verified:
                verified = None
            raise
        finally:
            renewer.cancel()
            await self._finish_lease(key, verified)

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

    async def _record(self, staged: StagedBlob, kind: str, location: str) -> None:
        record = artifacts.NewArtifact(staged.digest, staged.size, kind, location)
        await self.services.db.write(lambda s: artifacts.record_artifacts(s, [record]))

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
        me = self.services.worker
        with contextlib.suppress(Exception):
            await self.services.db.write(lambda s: leases.release_all(s, me))
