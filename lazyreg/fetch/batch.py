"""A batch of small blobs (image configs) fetched with the rules of `fetcher.py`.

`Fetcher.fetch_small` gives each blob of the batch its flight, as `join`
does, so that readers in this process join it; `run_batch` fills them at the
database cost of two transactions for the whole batch instead of three per
blob:

- one claims the leases of every blob not recorded as stored (`leases.claim_many`);
- each claimed blob is read whole into memory (`small.py`, SMALL_AT_ONCE at
  a time) and `put` in storage, which checks its digest; a failed source is
  cooled down and the next one tried, as for any blob;
- one records the artifacts and finishes the leases (`finish_many`), or
  releases those given up (shutdown) for another process to take at once.

A blob whose lease another process holds, or recorded but missing from
storage, goes the per-blob way (`Fetcher._fill`: follow, take over). The
flights leave the fetcher only once the batch is recorded, so that a new fetch
of one of them finds its row.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lazyreg.db import artifacts, leases
from lazyreg.fetch.fetcher import MAX_CLAIM_RACES, Fetcher, Flight, lease_key
from lazyreg.fetch.small import read_whole
from lazyreg.fetch.source import Source
from lazyreg.storage import base as storage
from lazyreg.upstream.errors import DigestMismatch, Unavailable, UpstreamError

log = logging.getLogger(__name__)

SMALL_AT_ONCE = 8  # blobs of one batch read or being stored at once (memory: 8 x SMALL_BLOB)


async def run_batch(fetcher: Fetcher, flights: dict[str, Flight], sources: list[Source]
                    ) -> None:
    """Fill the flights of a batch (see the module's docstring); their growings say how."""
    services = fetcher.services
    ours: set[str] = set()  # digests whose lease we hold
    outcomes: dict[str, bool] = {}  # lease key -> verified
    stored: list[artifacts.NewArtifact] = []
    at_once = asyncio.Semaphore(SMALL_AT_ONCE)

    async def one(flight: Flight, held: bool) -> None:
        growing = flight.growing
        try:
            if held or growing.digest not in ours:
                await fetcher._fill(flight, sources)  # leased elsewhere, or a row without file
                return
            growing.led = True
            try:
                async with at_once:
                    location = await _put_small(fetcher, growing.digest, growing.size, sources)
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
            held, recorded = await _claim_many(fetcher, list(flights))
            ours.update(d for d in flights if d not in held and d not in recorded)
            for digest in recorded:
                if await services.store.stat(digest) is None:
                    continue  # a row whose file is gone: fetched again, per blob
                reader = await services.store.open(digest)
                if reader is not None:
                    flights[digest].growing.set_source(reader, reader.landed())
                    flights[digest].growing.verified()
                    flights[digest].growing.close()
            renewer = asyncio.create_task(_keep_leases(fetcher, sorted(ours)))
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
            await _end_batch(fetcher, ours, outcomes, stored)
        finally:
            for flight in flights.values():
                if fetcher._flights.get(flight.growing.digest) is flight:
                    del fetcher._flights[flight.growing.digest]


async def _claim_many(fetcher: Fetcher, digests: list[str]) -> tuple[set[str], set[str]]:
    """Claim the leases of the digests not recorded as stored: (held elsewhere, recorded)."""
    services = fetcher.services
    me, ttl = services.worker, services.settings.lease_ttl

    def claim(session: Session) -> tuple[set[str], set[str]]:
        # The leases first, then the artifact rows, as `Fetcher._claim` does (and why).
        held = leases.claim_many(session, [lease_key(d) for d in digests], me, ttl,
                                 services.cluster_url)
        recorded = artifacts.stored_digests(session, digests)
        # A recorded blob's lease we just took goes back: nothing of ours runs under it.
        leases.release_many(session, [lease_key(d) for d in recorded
                                      if lease_key(d) not in held], me)
        return {d for d in digests if lease_key(d) in held}, recorded

    for _ in range(MAX_CLAIM_RACES):
        try:
            return await services.db.write(claim)
        except IntegrityError:
            continue
    raise Unavailable(f"could not claim the downloads of {len(digests)} blobs")


async def _put_small(fetcher: Fetcher, digest: str, size: int, sources: list[Source]) -> str:
    """Store the blob from the first source that sends its bytes; its location.

    Failed sources are cooled down, as the per-blob way does.
    """
    last: BaseException | None = None
    for source in sources:
        try:
            data = await read_whole(source, digest, size,
                                    fetcher.services.settings.upstream_read_timeout)
            try:
                return await fetcher.services.store.put(digest, data)
            except storage.DigestMismatch as exc:
                raise DigestMismatch(f"upstream sent the wrong bytes: {exc}") from exc
        except (UpstreamError, OSError) as exc:
            last = exc
            await fetcher._source_failed(source, exc)
    raise last or Unavailable(f"no upstream source for {digest}")


async def _keep_leases(fetcher: Fetcher, digests: list[str]) -> None:
    services = fetcher.services
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


async def _end_batch(fetcher: Fetcher, ours: set[str], outcomes: dict[str, bool],
                     stored: list[artifacts.NewArtifact]) -> None:
    """Record what was stored and finish the leases (released if never finished)."""
    services = fetcher.services
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

