"""Single flight: at most one download per blob in this process; later askers join it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lazyreg.db.models import Artifact, BlobSource, Remote, utcnow
from lazyreg.fetch import lease
from lazyreg.fetch.download import Download, Source
from lazyreg.redact import redact
from lazyreg.services import Services
from lazyreg.upstream.errors import (
    AuthError,
    DigestMismatch,
    NotFound,
    Unavailable,
    upstream_status,
)

log = logging.getLogger(__name__)

# Failures that say this source will not give the right bytes soon: skip it for a while.
COOLDOWN_ERRORS = (DigestMismatch, NotFound, AuthError)
STORED = "stored"


@dataclass(frozen=True)
class Sources:
    usable: list[Source]
    why: str = ""  # when none is usable
    cooling: bool = False  # none is usable only because each failed recently


class Fetcher:
    """Downloads in flight in this process, by digest; other processes are reached via leases."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._downloads: dict[str, Download] = {}
        self._starting: dict[str, asyncio.Future[Download | None]] = {}

    def in_flight(self, digest: str) -> Download | None:
        download = self._downloads.get(digest)
        if download is None or download.finished.is_set():
            return None
        return download

    def progress(self) -> list[tuple[str, int, int]]:
        """(digest, size, bytes landed) of each download in flight here, led or followed."""
        return [(d.digest, d.size, d.written) for d in self._downloads.values()
                if not d.finished.is_set()]

    async def join(self, digest: str, size: int, sources: list[Source], *, keep: bool,
                   kind: str = "layer") -> Download | None:
        """The download of `digest` to read from: joined, followed or started.

        None means the blob is now in storage (another process just committed it).
        """
        existing = self.in_flight(digest)
        if existing is not None:
            return existing
        starting = self._starting.get(digest)
        if starting is not None:
            return await asyncio.shield(starting)
        future: asyncio.Future[Download | None] = asyncio.get_running_loop().create_future()
        self._starting[digest] = future
        try:
            download = await self._claim_or_follow(digest, size, sources, keep, kind)
            future.set_result(download)
            return download
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters, if any, get it from await
            raise
        finally:
            del self._starting[digest]

    async def fetch(self, digest: str, size: int, sources: list[Source], *,
                    kind: str) -> None:
        """Download into storage (or join the download in flight) and wait for it."""
        download = await self.join(digest, size, sources, keep=True, kind=kind)
        if download is None:
            return
        await download.finished.wait()
        if download.error is not None:
            raise download.error

    async def _claim_or_follow(self, digest: str, size: int, sources: list[Source],
                               keep: bool, kind: str) -> Download | None:
        services = self.services
        key, me, ttl = f"blob:{digest}", services.worker_id, services.settings.lease_ttl
        name = digest[7:] + ".part"

        def claim(session: Session) -> lease.Holder | str | None:
            if (session.scalar(select(Artifact.id).where(Artifact.digest == digest))
                    and services.store.exists(digest)):
                return STORED  # committed meanwhile (a row whose file is gone is fetched again)
            return lease.claim(session, key, me, ttl)

        for _ in range(200):
            try:
                holder = await services.db.write(claim)
            except IntegrityError:
                continue  # PostgreSQL: another process inserted the lease first; look again
            if holder == STORED:
                return None
            if holder is None:
                download = Download(digest, size, services.store.stage(name))
                self._downloads[digest] = download
                download.task = asyncio.create_task(
                    self._lead(download, sources, keep, kind, key))
                return download
            assert isinstance(holder, lease.Holder)
            path = services.store.staging_path(holder.owner, name)
            try:
                download = Download(digest, size, None, path=path)
            except FileNotFoundError:
                await asyncio.sleep(0.02)  # its owner is about to create it, or just finished
                continue
            self._downloads[digest] = download
            download.task = asyncio.create_task(self._follow(download, key, holder.owner))
            return download
        raise Unavailable(f"could not start or join a download of {digest}")

    async def _lead(self, download: Download, sources: list[Source], keep: bool, kind: str,
                    key: str) -> None:
        services = self.services
        me, ttl = services.worker_id, services.settings.lease_ttl

        async def on_verified(d: Download) -> None:
            if keep:
                await self._commit(d, kind)
            else:
                d.staged.discard()  # readers keep their descriptors

        async def keep_lease() -> None:
            while True:
                await asyncio.sleep(ttl / 3)
                await services.db.write(lambda s: lease.renew(s, key, me, ttl))

        renewer = asyncio.create_task(keep_lease())
        ok = False
        try:
            async with asyncio.timeout(services.settings.detached_fetch_timeout):
                await download.run(sources, on_verified, self._source_failed)
            ok = True
        except BaseException as exc:  # recorded on the download for every reader
            if not isinstance(exc, asyncio.CancelledError):
                status = upstream_status(exc)
                log.warning("download of %s failed (upstream status %s): %s", download.digest,
                            status or "none", exc, extra={"fields": {
                                "digest": download.digest, "upstream_status": status}})
        finally:
            renewer.cancel()
            with contextlib.suppress(Exception):
                await asyncio.shield(services.db.write(
                    lambda s: lease.finish(s, key, me, ttl, ok)))
            self._forget(download)

    async def _follow(self, download: Download, key: str, owner: str) -> None:
        digest = download.digest

        def status(session: Session) -> str:
            if session.scalar(select(Artifact.id).where(Artifact.digest == digest)):
                return "verified"
            held = lease.holder(session, key)
            if held is None:
                return "failed"
            if held.owner == lease.DONE + owner:
                return "verified"
            if held.owner != owner or held.expires < time.time():
                return "failed"
            return "running"

        try:
            await download.follow(lambda: self.services.db.read(status))
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                log.warning("followed download of %s failed: %s", digest, exc)
        finally:
            self._forget(download)

    def _forget(self, download: Download) -> None:
        if self._downloads.get(download.digest) is download:
            del self._downloads[download.digest]

    async def close(self) -> None:
        """Stop downloads and give up this process's leases, so others take over at once."""
        tasks = [d.task for d in self._downloads.values() if d.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        me = self.services.worker_id
        with contextlib.suppress(Exception):
            await self.services.db.write(lambda s: lease.release_all(s, me))

    async def _commit(self, download: Download, kind: str) -> None:
        store = self.services.store
        location = await asyncio.to_thread(store.commit, download.staged, download.digest,
                                           download.size)

        def insert(session: Session) -> None:
            if session.scalar(select(Artifact.id).where(Artifact.digest == download.digest)):
                return
            session.add(Artifact(digest=download.digest, size=download.size, kind=kind,
                                 location=location))
        # IntegrityError: another process committed the same blob first, same bytes.
        with contextlib.suppress(IntegrityError):
            await self.services.db.write(insert)

    async def _source_failed(self, source: Source, exc: BaseException) -> None:
        log.warning("source %s/%s failed for a blob: %s", source.remote_name,
                    source.upstream_name, exc)
        if source.source_id is None or not isinstance(exc, COOLDOWN_ERRORS):
            return
        until = utcnow() + timedelta(seconds=self.services.settings.source_cooldown)

        def record(session: Session) -> None:
            row = session.get(BlobSource, source.source_id)
            if row is not None:
                row.failures += 1
                row.last_error = redact(f"{type(exc).__name__}: {exc}")
                row.cooldown_until = until
        with contextlib.suppress(Exception):
            await self.services.db.write(record)

    def sources_for(self, session: Session, blob_id: int) -> Sources:
        """The usable sources of a blob, and why there are none when there are none."""
        now = utcnow()
        rows = session.execute(
            select(BlobSource, Remote).join(Remote, Remote.id == BlobSource.remote_id)
            .where(BlobSource.blob_id == blob_id)
            .order_by(BlobSource.failures, BlobSource.id)).all()
        usable = [(s, r) for s, r in rows
                  if s.cooldown_until is None or _aware(s.cooldown_until) <= now]
        if not usable and rows:
            first = rows[0][0]
            return Sources([], cooling=True, why=(
                f"every upstream source is cooling down after a failure"
                f" (until {first.cooldown_until}): {first.last_error}"))
        if not usable:
            return Sources([], why="no upstream source is recorded for this blob")
        return Sources([Source(self.services.upstream_for(r), s.upstream_name, s.id, r.name,
                               r.policy) for s, r in usable])

def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; they were written in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)
