"""Manifests recorded but not fetched (the platform filter), fetched on their first request.

A sync with a remote's `platforms` records the other children of an index
(their descriptor: digest, type, size) without fetching them. The first GET of
one fetches it under the lazy fetch rules, as a blob would be:

- single flight: one task per digest in this process, that every request
  joins, and one lease (`manifest:<digest>`) across processes; a process that
  finds another's lease waits for it to end, then reads what it wrote;
- verified: the bytes must hash to the digest, or nothing is written;
- stored: put in storage, its artifact recorded, and its row filled in with its
  blobs, which every version holding the manifest then holds too (`record.fill_pending`).

The upstream asked is the one whose verified index named the manifest (its
`ManifestSource` rows), each tried in turn. Bounded: a flight takes at most
MAX_FLIGHT seconds, and at most MAX_FLIGHTS run at once in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lazyreg.db import leases
from lazyreg.db.artifacts import NewArtifact, record_artifacts
from lazyreg.db.models import PENDING, Manifest, ManifestSource, Remote
from lazyreg.oci.digest import algorithm, digest_of
from lazyreg.oci.manifest import InvalidManifest, parse_manifest
from lazyreg.services import Services
from lazyreg.sync.record import FetchedManifest, fill_pending
from lazyreg.upstream.errors import DigestMismatch, UpstreamError

log = logging.getLogger(__name__)

MAX_FLIGHT = 60.0  # seconds one fetch may take in all
MAX_FLIGHTS = 256  # fetches at once in this process
FOLLOW_POLL = 0.05  # seconds between looks at another process's lease
MAX_SOURCES = 8  # upstreams tried for one manifest


class PendingUnavailable(Exception):
    """No upstream gave the manifest (the message says why)."""


def _stored(session: Session, digest: str) -> bytes | None:
    data = session.scalar(select(Manifest.data).where(Manifest.digest == digest))
    return None if data is None or data == PENDING else bytes(data)


def _sources(session: Session, digest: str) -> list[tuple[Remote, str]]:
    rows = session.execute(
        select(Remote, ManifestSource.upstream_name)
        .join(ManifestSource, ManifestSource.remote_id == Remote.id)
        .join(Manifest, Manifest.id == ManifestSource.manifest_id)
        .where(Manifest.digest == digest).limit(MAX_SOURCES)).all()
    for remote, _ in rows:
        session.expunge(remote)
    return [(remote, name) for remote, name in rows]


class PendingManifests:
    """Fetches pending manifests on demand: `fetch(digest)` answers their bytes."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._flights: dict[str, asyncio.Task[bytes]] = {}
        self._slots = asyncio.Semaphore(MAX_FLIGHTS)

    async def fetch(self, digest: str) -> bytes:
        task = self._flights.get(digest)
        if task is None:
            # Its own lifetime: a client that goes away does not stop it.
            task = asyncio.create_task(self._fly(digest))
            self._flights[digest] = task
            task.add_done_callback(lambda t: self._done(digest, t))
        return await asyncio.shield(task)

    def _done(self, digest: str, task: asyncio.Task[bytes]) -> None:
        self._flights.pop(digest, None)
        if not task.cancelled() and task.exception() is not None:
            log.warning("fetch of pending manifest %s failed: %s", digest, task.exception())

    async def close(self) -> None:
        tasks = list(self._flights.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _fly(self, digest: str) -> bytes:
        services = self.services
        db, me, ttl = services.db, services.worker, services.settings.lease_ttl
        key = f"manifest:{digest}"
        async with self._slots, asyncio.timeout(MAX_FLIGHT):
            while True:
                data = await db.read(lambda s: _stored(s, digest))
                if data is not None:
                    return data
                try:
                    holder = await db.write(lambda s: leases.claim(s, key, me, ttl))
                except IntegrityError:
                    continue  # PostgreSQL: another process inserted the lease first
                if holder is None:
                    break
                while holder is not None and not holder.takeable(time.time()):
                    await asyncio.sleep(FOLLOW_POLL)
                    holder = await db.read(lambda s: leases.get(s, key))
            ok = False
            try:
                data = await self._fetch(digest)
                ok = True
                return data
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.shield(db.write(
                        lambda s: leases.finish(s, key, me, ttl, ok)))

    async def _fetch(self, digest: str) -> bytes:
        """Under the lease: stored by now (another process), else from an upstream."""
        services = self.services
        data = await services.db.read(lambda s: _stored(s, digest))
        if data is not None:
            return data
        sources = await services.db.read(lambda s: _sources(s, digest))
        if not sources:
            raise PendingUnavailable(f"manifest {digest}: no upstream is known for it")
        errors = []
        for remote, name in sources:
            try:
                fetched = await self._from(remote, name, digest)
            except (UpstreamError, InvalidManifest) as exc:
                errors.append(f"{remote.name}: {exc}")
                continue
            await self._store(fetched, remote.id, name)
            return fetched.data
        raise PendingUnavailable(f"manifest {digest}: " + "; ".join(errors))

    async def _store(self, fetched: FetchedManifest, remote_id: int, name: str) -> None:
        services = self.services
        location = await services.store.put(fetched.digest, fetched.data)
        artifact = NewArtifact(fetched.digest, len(fetched.data), "manifest", location)

        def write(session: Session) -> None:
            record_artifacts(session, [artifact])
            fill_pending(session, fetched, remote_id, name)
        await services.db.write(write)

    async def _from(self, remote: Remote, name: str, digest: str) -> FetchedManifest:
        client = self.services.upstream_for(remote)
        body = await client.get_manifest(name, digest)
        actual = digest_of(body.data, algorithm(digest))
        if actual != digest:
            raise DigestMismatch(f"manifest {name}@{digest}: the upstream sent"
                                 f" {len(body.data)} bytes hashing to {actual}")
        parsed = parse_manifest(body.data, body.media_type)
        if parsed.children:
            # Its children would need the same treatment; a platform's child is an image.
            raise InvalidManifest(f"manifest {name}@{digest} is an index, where an image"
                                  " manifest was recorded")
        return FetchedManifest(digest, body.data, parsed)
