"""One upstream download of one blob into a staging file, which readers follow as it grows.

The download's lifetime is its own: readers attach and detach freely, and a
reader leaving does not stop it. Bytes are hashed and written in a worker
thread while the event loop receives the next chunk. Readers are never given
the last byte before the digest is verified, so a client of a bad download sees
a cut connection, never a complete wrong blob.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from lazyreg.storage.filesystem import FilesystemStaged
from lazyreg.upstream.client import UpstreamClient
from lazyreg.upstream.errors import DigestMismatch, Unavailable, UpstreamError

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
READ_CHUNK = 1024 * 1024
MAX_RESUMES = 5
MAX_PENDING = 8  # chunks received but not yet written: the memory bound of a download
FOLLOW_POLL = 0.005
FOLLOW_CHECK = 0.1


@dataclass(frozen=True)
class Source:
    """Where a blob can be fetched: a remote's client and the upstream repository name."""

    client: UpstreamClient
    upstream_name: str
    source_id: int | None = None  # the BlobSource row, when there is one
    remote_name: str = ""
    policy: str = "on_demand"


class Download:
    """A blob on its way: fetched here (`run`) or by another process (`follow`).

    Either way readers see the same thing: `written` bytes readable from the
    file, `verified` once the digest matched, `error` if it went wrong.
    """

    def __init__(self, digest: str, size: int, staged: FilesystemStaged | None,
                 path: Path | None = None) -> None:
        self.digest = digest
        self.size = size
        self._staging = staged
        self.written = 0  # bytes readable from the staging file
        self.verified = False
        self.error: BaseException | None = None
        self.finished = asyncio.Event()
        self._changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self._queued = 0  # bytes handed to the writer thread
        self._writer: ThreadPoolExecutor | None = None
        # Held open for the download's life: a reader dups it, so it keeps
        # reading after the staging file is renamed into storage or unlinked.
        self._fd = os.open(path or self.staged.path, os.O_RDONLY)

    # ------------------------------------------------------------ download side

    @property
    def staged(self) -> FilesystemStaged:
        if self._staging is None:
            raise RuntimeError("a followed download has no staging file of its own")
        return self._staging

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def run(self, sources: list[Source],
                  on_verified: Callable[[Download], Awaitable[None]],
                  on_source_failed: Callable[[Source, BaseException], Awaitable[None]]) -> None:
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blob-writer")
        try:
            last: BaseException | None = None
            for source in sources:
                try:
                    await self._fetch_from(source)
                    self._verify()
                    break
                except (UpstreamError, OSError) as exc:
                    last = exc
                    await on_source_failed(source, exc)
                    if self.written:
                        # Bytes already went to readers; another source may not
                        # be trusted to continue them, so stop here.
                        raise
                    await asyncio.get_running_loop().run_in_executor(self._writer,
                                                                     self.staged.reset)
            else:
                raise last or Unavailable(f"no upstream source for {self.digest}")
            # The bytes are proven: readers may have the last one while we commit.
            self.verified = True
            self._notify()
            await on_verified(self)
        except BaseException as exc:
            self.error = exc
            self.staged.discard()
            raise
        finally:
            self._writer.shutdown(wait=False)
            self._close()

    def _verify(self) -> None:
        self.staged.close()
        actual = "sha256:" + self.staged.hexdigest()
        if self.staged.size != self.size or actual != self.digest:
            raise DigestMismatch(
                f"upstream sent {self.staged.size} bytes hashing to {actual};"
                f" expected {self.size} bytes with {self.digest}")

    async def _fetch_from(self, source: Source) -> None:
        resumes = 0
        while True:
            offset = self._queued = self.staged.size
            try:
                async with source.client.open_blob(source.upstream_name, self.digest,
                                                   offset) as resp:
                    skip = offset if resp.status == 200 else 0
                    await self._receive(resp.content, skip)
                if self.staged.size > self.size:
                    raise DigestMismatch(f"upstream sent more than {self.size} bytes")
                if self.staged.size < self.size:
                    raise aiohttp.ClientPayloadError("body ended early")
                return
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError,
                    TimeoutError) as exc:
                if resumes >= MAX_RESUMES:
                    raise Unavailable(f"blob {self.digest}: {exc}") from exc
                resumes += 1
                log.info("blob %s cut at %d bytes (%s); resuming", self.digest,
                         self.staged.size, exc)
                await asyncio.sleep(min(0.2 * 2 ** resumes, 5.0))

    async def _receive(self, stream: aiohttp.StreamReader, skip: int) -> None:
        """Copy the body into the staging file while receiving the next chunks.

        Chunks are hashed and written in order by this download's own thread
        (hashlib and file writes release the GIL); at most MAX_PENDING chunks
        wait for it, so memory stays flat whatever the blob size.
        """
        loop = asyncio.get_running_loop()
        pending: deque[asyncio.Future[None]] = deque()
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
                if self._queued > self.size:
                    raise DigestMismatch(f"upstream sent more than {self.size} bytes")
                future = loop.run_in_executor(self._writer, self.staged.write, chunk)
                future.add_done_callback(self._advance)
                pending.append(future)
                while len(pending) > MAX_PENDING or (pending and pending[0].done()):
                    await pending.popleft()
        finally:
            for future in pending:
                await asyncio.shield(future)

    def _advance(self, _: object = None) -> None:
        # The writer thread updates `staged.size` after each write: every byte
        # below it is on disk, in order.
        self.written = self.staged.size
        self._notify()

    async def follow(self, state: Callable[[], Awaitable[str]]) -> None:
        """Follow another process's download of this blob through its staging file.

        `state()` says "running", "verified" or "failed"; it is asked about ten
        times a second, the file's size far more often.
        """
        try:
            checked = 0.0
            loop = asyncio.get_running_loop()
            while True:
                grown = min(os.fstat(self._fd).st_size, self.size)
                if grown > self.written:
                    self.written = grown
                    self._notify()
                if loop.time() - checked >= FOLLOW_CHECK:
                    checked = loop.time()
                    status = await state()
                    if status == "verified":
                        self.written = self.size
                        self.verified = True
                        return
                    if status != "running":
                        raise Unavailable(f"the download of {self.digest} by another"
                                          " server process failed")
                await asyncio.sleep(FOLLOW_POLL)
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            self._close()

    # ------------------------------------------------------------ reader side

    def _close(self) -> None:
        # Closing and marking finished happen together, with no await between:
        # `open` can never dup a descriptor number that was closed and reused.
        os.close(self._fd)
        self._fd = -1
        self.finished.set()
        self._notify()

    def open(self) -> int | None:
        """A descriptor on the staging file for `read`; None once the download has finished."""
        if self.finished.is_set():
            return None
        return os.dup(self._fd)

    async def ranges(self, start: int = 0, end: int | None = None
                     ) -> AsyncIterator[tuple[int, int]]:
        """Yield (offset, count) spans of [start, end) as they become readable.

        The last byte is held back until the digest is verified, so a reader of
        a bad download never completes its body.
        """
        end = self.size if end is None else end
        pos = start
        while pos < end:
            if self.error is not None and not self.verified:
                raise self.error
            limit = end if self.verified else min(end, self.size - 1)
            limit = min(limit, self.written)
            if pos < limit:
                yield pos, limit - pos
                pos = limit
                continue
            changed = self._changed
            if self.finished.is_set() and not changed.is_set() and not self.verified:
                raise self.error or Unavailable(f"download of {self.digest} stopped")
            await changed.wait()

    async def read(self, fd: int, start: int = 0, end: int | None = None
                   ) -> AsyncIterator[bytes]:
        """Bytes [start, end) as they land, read from `fd` (which this closes)."""
        try:
            async for offset, count in self.ranges(start, end):
                while count:
                    data = os.pread(fd, min(READ_CHUNK, count), offset)
                    if not data:
                        raise OSError(f"staging file of {self.digest} shrank")
                    offset += len(data)
                    count -= len(data)
                    yield data
        finally:
            os.close(fd)
