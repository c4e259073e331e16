"""Download one blob from its sources into storage's staging, filling a `Growing` for its readers.

- Staging starts only once an upstream response is open, that is once the
  remote's download slot is ours: a download waiting for a slot holds no file
  descriptor and no staging file.
- Bytes are hashed and written in order by this download's own thread while
  the event loop receives the next chunk; at most MAX_PENDING chunks wait for
  it (the memory bound of a download). Whatever happens, every write handed to
  the thread is waited for before the staged blob is aborted, so no write runs
  on a closed file and no write error goes unobserved.
- A body cut short is resumed with Range, MAX_RESUMES times with backoff; an
  upstream that ignores Range is skipped up to where we were.
- A source that fails before any byte reached readers is replaced by the next
  one. After bytes went to readers the download fails instead: readers cannot
  be told to start again.
- The digest is checked once, from the hash kept while writing; only then do
  readers get the last byte (`Growing.verified`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import aiohttp

from lazyreg.fetch.growing import Growing
from lazyreg.fetch.source import ChunkStream, Source
from lazyreg.storage import base as storage
from lazyreg.storage.base import BlobStore, StagedBlob
from lazyreg.upstream.errors import DigestMismatch, Unavailable, UpstreamError

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
MAX_PENDING = 8  # chunks received but not yet written
MAX_RESUMES = 5
RESUME_BACKOFF = 0.2  # seconds before the first resume; doubling, at most 5


class _EndedEarly(Exception):
    """The upstream's body ended before the blob's size: resume it."""


RESUMABLE = (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError,
             _EndedEarly)

SourceFailed = Callable[[Source, BaseException], Awaitable[None]]


async def settle(futures: Sequence[asyncio.Future[None]]) -> None:
    """Wait until every future is done, even through a cancellation (raised again after)."""
    gathered = asyncio.gather(*futures, return_exceptions=True)
    cancelled = False
    while not gathered.done():
        try:
            await asyncio.shield(gathered)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


class Leader:
    def __init__(self, growing: Growing, store: BlobStore, on_source_failed: SourceFailed
                 ) -> None:
        self.growing = growing
        self.store = store
        self.on_source_failed = on_source_failed
        self.staged: StagedBlob | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blob-writer")
        self._queued = 0  # bytes handed to the writer thread

    async def run(self, sources: list[Source]) -> StagedBlob:
        """Fetch and verify; the verified staged blob, for the caller to commit or abort."""
        try:
            last: BaseException | None = None
            for source in sources:
                try:
                    await self._fetch_from(source)
                    staged = self._verify()
                    break
                except (UpstreamError, OSError) as exc:
                    last = exc
                    await self.on_source_failed(source, exc)
                    if self.growing.landed:
                        raise  # readers have bytes another source might not match
                    if self.staged is not None:
                        await self._in_writer(self.staged.reset)
            else:
                raise last or Unavailable(f"no upstream source for {self.growing.digest}")
            self.growing.verified()
            return staged
        except BaseException:
            if self.staged is not None:
                await self.staged.abort()
            raise
        finally:
            self._writer.shutdown(wait=False)

    def _verify(self) -> StagedBlob:
        assert self.staged is not None
        try:
            self.staged.verify()
        except storage.DigestMismatch as exc:
            raise DigestMismatch(f"upstream sent the wrong bytes: {exc}") from exc
        return self.staged

    async def _in_writer(self, fn: Callable[[], None]) -> None:
        future = asyncio.get_running_loop().run_in_executor(self._writer, fn)
        await settle([future])
        future.result()

    async def _stage(self) -> StagedBlob:
        g = self.growing
        staged = await self.store.stage(g.digest, g.size)
        try:
            reader = staged.open_reader()
        except BaseException:
            await staged.abort()
            raise
        self.staged = staged
        g.set_source(reader)
        return staged

    async def _fetch_from(self, source: Source) -> None:
        g = self.growing
        resumes = 0
        while True:
            offset = self._queued = self.staged.written if self.staged else 0
            try:
                async with source.client.open_blob(source.upstream_name, g.digest,
                                                   offset) as resp:
                    staged = self.staged or await self._stage()
                    await self._receive(staged, resp.content, offset if resp.status == 200 else 0)
                if staged.written > g.size:
                    raise DigestMismatch(f"upstream sent more than {g.size} bytes")
                if staged.written < g.size:
                    raise _EndedEarly(f"body ended at {staged.written} of {g.size} bytes")
                return
            except RESUMABLE as exc:
                if resumes >= MAX_RESUMES:
                    raise Unavailable(f"blob {g.digest}: {exc}") from exc
                resumes += 1
                log.info("blob %s cut at %d bytes (%s); resuming", g.digest,
                         self.staged.written if self.staged else 0, exc)
                await asyncio.sleep(min(RESUME_BACKOFF * 2 ** resumes, 5.0))

    async def _receive(self, staged: StagedBlob, stream: ChunkStream, skip: int) -> None:
        """Copy the body into staging while receiving the next chunks."""
        loop = asyncio.get_running_loop()
        size = self.growing.size
        pending: deque[asyncio.Future[None]] = deque()

        def landed(_: object) -> None:
            # The thread updates `written` after each write: every byte below
            # it is in staging, in order.
            self.growing.advance(staged.written)

        try:
            while True:
                chunk = await stream.read(CHUNK)
                if not chunk:
                    break
                if skip:
                    # The upstream ignored Range: drop what we already have.
                    cut = min(skip, len(chunk))
                    chunk, skip = chunk[cut:], skip - cut
                    if not chunk:
                        continue
                self._queued += len(chunk)
                if self._queued > size:
                    raise DigestMismatch(f"upstream sent more than {size} bytes")
                future = loop.run_in_executor(self._writer, staged.write, chunk)
                future.add_done_callback(landed)
                pending.append(future)
                while len(pending) > MAX_PENDING or (pending and pending[0].done()):
                    await asyncio.shield(pending[0])
                    pending.popleft()
            while pending:
                await asyncio.shield(pending[0])
                pending.popleft()
        finally:
            if pending:
                await settle(pending)
