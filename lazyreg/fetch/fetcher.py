"""Single flight: at most one download per blob in this process; later askers join it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lazyreg.db.models import Artifact, BlobSource, Remote, utcnow
from lazyreg.fetch.download import Download, Source
from lazyreg.services import Services
from lazyreg.upstream.errors import AuthError, DigestMismatch, NotFound

log = logging.getLogger(__name__)

# Failures that say this source will not give the right bytes soon: skip it for a while.
COOLDOWN_ERRORS = (DigestMismatch, NotFound, AuthError)


class Fetcher:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._downloads: dict[str, Download] = {}

    def in_flight(self, digest: str) -> Download | None:
        download = self._downloads.get(digest)
        if download is None or download.finished.is_set():
            return None
        return download

    def start(self, digest: str, size: int, sources: list[Source], *, keep: bool,
              kind: str = "layer") -> Download:
        """Join the download of `digest` in flight, or start one."""
        existing = self.in_flight(digest)
        if existing is not None:
            return existing
        download = Download(digest, size, self.services.store.stage())
        self._downloads[digest] = download
        download.task = asyncio.create_task(self._run(download, sources, keep, kind))
        return download

    async def fetch(self, digest: str, size: int, sources: list[Source], *,
                    kind: str) -> None:
        """Download into storage (or join the download in flight) and wait for it."""
        download = self.start(digest, size, sources, keep=True, kind=kind)
        await download.finished.wait()
        if download.error is not None:
            raise download.error

    async def _run(self, download: Download, sources: list[Source], keep: bool,
                   kind: str) -> None:
        async def on_verified(d: Download) -> None:
            if keep:
                await self._commit(d, kind)
            else:
                d.staged.discard()

        try:
            async with asyncio.timeout(self.services.settings.detached_fetch_timeout):
                await download.run(sources, on_verified, self._source_failed)
        except BaseException as exc:  # recorded on the download for every reader
            if not isinstance(exc, asyncio.CancelledError):
                log.warning("download of %s failed: %s", download.digest, exc)
        finally:
            if self._downloads.get(download.digest) is download:
                del self._downloads[download.digest]

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
                row.last_error = f"{type(exc).__name__}: {exc}"
                row.cooldown_until = until
        with contextlib.suppress(Exception):
            await self.services.db.write(record)

    def sources_for(self, session: Session, blob_id: int) -> tuple[list[Source], str | None]:
        """The usable sources of a blob, and why there are none when there are none."""
        now = utcnow()
        rows = session.execute(
            select(BlobSource, Remote).join(Remote, Remote.id == BlobSource.remote_id)
            .where(BlobSource.blob_id == blob_id)
            .order_by(BlobSource.failures, BlobSource.id)).all()
        usable = [(s, r) for s, r in rows
                  if s.cooldown_until is None or _aware(s.cooldown_until) <= now]
        if not usable:
            if rows:
                first = rows[0][0]
                return [], (f"every upstream source is cooling down after a failure"
                            f" (until {first.cooldown_until}): {first.last_error}")
            return [], "no upstream source is recorded for this blob"
        return [Source(self.services.upstream_for(r), s.upstream_name, s.id, r.name, r.policy)
                for s, r in usable], None


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; they were written in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)
