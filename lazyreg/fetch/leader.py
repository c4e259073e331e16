"""Download one blob from its sources, filling a `Growing` for its readers and storage's staging.

- The event loop receives the body into blocks (`lazyreg.fetch.blocks`), the kernel
  copying straight into them where the connection allows it
  (`lazyreg.upstream.body`); each received piece is in the `Growing`'s window for
  readers at once, and goes to the download's hasher and writer threads
  (`lazyreg.fetch.pipeline`). Readers never wait for the disk, and the digest is
  checked as soon as the last byte is hashed, however far behind the disk is.
- The window is WINDOW_BLOCKS blocks (the memory bound of a download). A block
  leaves it once hashed and written and once the leading reader is past it (or
  PACE_WAIT went by: see `lazyreg.fetch.growing`); while the window is full,
  receiving waits, and the upstream with it.
- Staging starts only once an upstream response is open, that is once the
  remote's download slot is ours: a download waiting for a slot holds no file
  descriptor and no staging file.
- When storing fails (a full disk, an I/O error, no staging file to be had), the
  download goes on without storing: the staging file is removed at once, the
  readers get the blob from memory (`relaying`), and the digest is checked all
  the same; `store_error` says why nothing was stored. The threads are always
  done with the staged blob before it is committed or aborted.
- A body cut short is resumed with Range, MAX_RESUMES times with backoff; an
  upstream that ignores Range is skipped up to where we were.
- A takeover (the process that led the download died) starts from the bytes it
  staged, when they can be read (`seed`: its staging on a shared filesystem):
  they are hashed, staged and given to readers as if received, and the upstream
  is asked for the rest with Range (not at all when the seed is whole).
- A source that fails before any byte was received is replaced by the next one.
  After bytes reached the window the download fails instead: readers cannot be
  told to start again.
- The digest is checked once, from the hash kept while receiving; only then do
  readers get the last byte (`Growing.verified`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiohttp

from lazyreg.fetch.blocks import BLOCK, Block, BlockPool
from lazyreg.fetch.growing import Growing
from lazyreg.fetch.pipeline import Pipeline
from lazyreg.fetch.source import ChunkStream, PumpStream, Source
from lazyreg.storage import base as storage
from lazyreg.storage.base import BlobReader, BlobStore, Chunk, StagedBlob
from lazyreg.storage.layout import new_hash, split_digest
from lazyreg.upstream.body import TooLong
from lazyreg.upstream.errors import DigestMismatch, Unavailable, UpstreamError
from lazyreg.upstream.stall import GuardedReader

log = logging.getLogger(__name__)

WINDOW_BLOCKS = 4  # blocks of a download in memory: 4 MiB (8 and 16 measured no faster)
PACE_WAIT = 0.1  # seconds the fill waits for its leading reader per block (>= 10 MiB/s)
MAX_RESUMES = 5
RESUME_BACKOFF = 0.2  # seconds before the first resume; doubling, at most 5


class _EndedEarly(Exception):
    """The upstream's body ended before the blob's size: resume it."""


RESUMABLE = (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError,
             _EndedEarly)

SourceFailed = Callable[[Source, BaseException], Awaitable[None]]


class _Unstored:
    """The hash of a blob that has no staging (it could not be created): relayed only."""

    def __init__(self, digest: str, size: int) -> None:
        self.digest, self.size, self.written = digest, size, 0
        self._hash = new_hash(digest)
        self._hashed = 0

    def update(self, data: Chunk) -> None:
        self._hash.update(data)
        self._hashed += len(data)

    def append(self, data: Chunk) -> None:
        raise OSError("no staging file")

    def verify(self) -> None:
        algorithm, hex_ = split_digest(self.digest)
        actual = self._hash.hexdigest()
        if self._hashed != self.size or actual != hex_:
            raise storage.DigestMismatch(f"expected {self.digest} ({self.size} bytes), got"
                                         f" {algorithm}:{actual} ({self._hashed} bytes)")


class _Replay:
    """The first `limit` bytes of a reader, as a body (`ChunkStream`): a takeover's seed."""

    def __init__(self, reader: BlobReader, limit: int) -> None:
        self._reader, self._limit, self._pos = reader, limit, 0

    async def read(self, n: int) -> bytes:
        data = bytes(await self._reader.read(self._pos, min(n, self._limit - self._pos)))
        self._pos += len(data)
        return data

    async def readinto(self, buffer: memoryview) -> int:
        n = min(len(buffer), self._limit - self._pos)
        if n <= 0:
            return 0
        data = await self._reader.read(self._pos, n)
        buffer[:len(data)] = data
        self._pos += len(data)
        return len(data)


class Leader:
    def __init__(self, growing: Growing, store: BlobStore, on_source_failed: SourceFailed,
                 pool: BlockPool, seed: BlobReader | None = None) -> None:
        self.growing = growing
        self.seed = seed  # bytes a lost download staged, to start from (closed once used)
        self.store = store
        self.on_source_failed = on_source_failed
        self.pool = pool
        self.staged: StagedBlob | None = None
        self.store_error: BaseException | None = None  # why the blob is relayed, not stored
        self._hasher: StagedBlob | _Unstored | None = None
        self._pipeline: Pipeline | None = None
        self.got = 0  # bytes received, in order from byte 0
        self._probe = memoryview(bytearray(1))
        self._stream: PumpStream | None = None  # the body being pumped, if it is
        self._room_task: asyncio.Task[None] | None = None
        self._abort_task: asyncio.Task[None] | None = None

    async def run(self, sources: list[Source]) -> StagedBlob | None:
        """Fetch and verify: the verified staged blob, for the caller to commit or abort,
        or None when it could not be stored (the readers got it all the same)."""
        try:
            last: BaseException | None = None
            for source in sources:
                try:
                    await self._fetch_from(source)
                    await self._verify()
                    break
                except (UpstreamError, OSError) as exc:
                    last = exc
                    await self.on_source_failed(source, exc)
                    if self.got:
                        raise  # readers may have bytes another source might not match
            else:
                raise last or Unavailable(f"no upstream source for {self.growing.digest}")
            self.growing.verified()  # readers get the last byte now, written or not
            await self._settle()
            await self._check_storing()
            if self._abort_task is not None:
                await self._abort_task
            if self.store_error is not None:
                return None
            assert self.staged is not None
            return self.staged
        except BaseException:
            if self._room_task is not None:
                self._room_task.cancel()
            await self._settle()
            if self.staged is not None:
                await self.staged.abort()
            raise
        finally:
            if self.seed is not None:
                self.seed.close()
            if self._pipeline is not None:
                self._pipeline.close()

    async def _settle(self) -> None:
        if self._pipeline is not None:
            await self._pipeline.settle()
            self._progress()

    # ------------------------------------------------------------ staging and storing

    async def _stage(self) -> Pipeline:
        g = self.growing
        try:
            staged = await self.store.stage(g.digest, g.size)
        except OSError as exc:  # no staging to be had (a full disk): relay
            hasher = _Unstored(g.digest, g.size)
            self._hasher = hasher
            self._pipeline = Pipeline(hasher, self._progress)
            self._pipeline.stop_storing()
            await self._storing_failed(exc)
            return self._pipeline
        try:
            reader = staged.open_reader()
        except BaseException:
            await staged.abort()
            raise
        self.staged = self._hasher = staged
        g.set_source(reader)
        self._pipeline = Pipeline(staged, self._progress)
        return self._pipeline

    def _progress(self) -> None:
        pipeline = self._pipeline
        if pipeline is not None and pipeline.storing:
            self.growing.advance(pipeline.written)

    async def _check_storing(self) -> None:
        pipeline = self._pipeline
        if pipeline is not None and pipeline.write_error is not None and self.store_error is None:
            await self._storing_failed(pipeline.write_error)

    async def _storing_failed(self, exc: BaseException) -> None:
        self._storing_failed_soon(exc)
        if self._abort_task is not None:
            await self._abort_task

    def _storing_failed_soon(self, exc: BaseException) -> None:
        """Relay from now on; remove the staging file at once, to give the disk its space back."""
        self.store_error = exc
        self.growing.relaying = True
        log.warning("blob %s cannot be stored (%s): relaying it to its readers without"
                    " storing it", self.growing.digest, exc)
        if self.staged is not None:
            # The writer thread writes nothing after a failure; the hasher needs no file.
            self._abort_task = asyncio.ensure_future(self.staged.abort())

    # ------------------------------------------------------------ receiving

    async def _replay_seed(self) -> None:
        """Take the seed's landed bytes as the first ones received."""
        seed, self.seed = self.seed, None
        if seed is None:
            return
        try:
            landed = min(seed.landed(), self.growing.size)
            if landed:
                if self._pipeline is None:
                    await self._stage()
                await self._receive(_Replay(seed, landed), 0)
                log.info("blob %s: taking over from %d staged bytes", self.growing.digest,
                         self.got)
        finally:
            seed.close()

    async def _fetch_from(self, source: Source) -> None:
        g = self.growing
        await self._replay_seed()
        if self.got >= g.size:
            return  # the lost download had every byte: no upstream request
        resumes = 0
        while True:
            offset = self.got
            try:
                async with source.client.open_blob(source.upstream_name, g.digest,
                                                   offset) as resp:
                    if self._pipeline is None:
                        await self._stage()
                    await self._receive(resp.content, offset if resp.status == 200 else 0)
                if self.got < g.size:
                    raise _EndedEarly(f"body ended at {self.got} of {g.size} bytes")
                return
            except RESUMABLE as exc:
                if resumes >= MAX_RESUMES:
                    raise Unavailable(f"blob {g.digest}: {exc}") from exc
                resumes += 1
                log.info("blob %s cut at %d bytes (%s); resuming", g.digest, self.got, exc)
                await asyncio.sleep(min(RESUME_BACKOFF * 2 ** resumes, 5.0))

    async def _receive(self, stream: ChunkStream, skip: int) -> None:
        """Receive the body into the window, handing each piece to the threads."""
        g, pipeline = self.growing, self._pipeline
        assert pipeline is not None
        size = g.size
        if isinstance(stream, GuardedReader) and not skip:
            self._stream = stream
            try:
                if await stream.pump(self, size - self.got):
                    return
            except TooLong as exc:
                raise DigestMismatch(f"upstream sent more than {size} bytes") from exc
            finally:
                self._stream = None
                if self._room_task is not None:
                    self._room_task.cancel()
        while self.got < size:
            block = await self._room()
            lo = self.got - block.start
            n = await stream.readinto(block.view[lo:min(BLOCK, size - block.start)])
            if not n:
                return  # ended early: the caller resumes
            if skip:
                # The upstream ignored Range: drop what we already have.
                cut = min(skip, n)
                skip -= cut
                if cut == n:
                    continue
                block.view[lo:lo + n - cut] = block.view[lo + cut:lo + n]
                n -= cut
            block.filled += n
            self.got += n
            pipeline.feed(block.view, lo, lo + n)
            g.receive(None, self.got)
            if pipeline.write_error is not None:
                await self._check_storing()
        if await stream.readinto(self._probe):
            raise DigestMismatch(f"upstream sent more than {size} bytes")

    # ------------------------------------------------------------ the pump's sink

    def room(self) -> memoryview | None:
        """Where the next bytes go (`lazyreg.upstream.body.Sink`): the newest block's free
        part, or a new block; None while the window is full (`_make_room` then resumes)."""
        g = self.growing
        if self.got >= g.size:
            return None
        block = g.blocks[-1] if g.blocks else None
        if block is None or block.filled == BLOCK:
            if len(g.blocks) >= WINDOW_BLOCKS:
                if not self._oldest_retires_now():
                    if self._room_task is None:
                        self._room_task = asyncio.ensure_future(self._make_room())
                    return None
                g.drop_oldest()
            block = self.pool.take(self.got)
            g.receive(block, self.got)
        return block.view[block.filled:min(BLOCK, g.size - block.start)]

    def received(self, n: int) -> None:
        g, pipeline = self.growing, self._pipeline
        assert pipeline is not None
        block = g.blocks[-1]
        lo = block.filled
        block.filled += n
        self.got += n
        pipeline.feed(block.view, lo, lo + n)
        g.receive(None, self.got)
        if pipeline.write_error is not None and self.store_error is None:
            self._storing_failed_soon(pipeline.write_error)

    def _oldest_retires_now(self) -> bool:
        """Whether the oldest block may leave the window without waiting for anything."""
        g, pipeline = self.growing, self._pipeline
        assert pipeline is not None
        oldest = g.blocks[0]
        if pipeline.hashed < oldest.end or (pipeline.storing and pipeline.written < oldest.end):
            return False
        self._progress()  # what readers behind the window read now is the file
        if g.relaying:
            slowest = g.slowest_reader()
            return slowest is None or slowest >= oldest.end
        lead = g.leading_reader()
        return lead is None or not oldest.start <= lead < oldest.end

    async def _make_room(self) -> None:
        stream = self._stream
        try:
            await self._retire_oldest()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if stream is not None:
                stream.abort(exc)
            return
        finally:
            self._room_task = None
        if stream is not None:
            stream.resume()

    async def _room(self) -> Block:
        """The block to receive into next: the newest, or a new one once the window has room."""
        g = self.growing
        if g.blocks and g.blocks[-1].filled < BLOCK:
            return g.blocks[-1]
        while len(g.blocks) >= WINDOW_BLOCKS:
            await self._retire_oldest()
        block = self.pool.take(self.got)
        g.receive(block, self.got)
        return block

    async def _retire_oldest(self) -> None:
        g, pipeline = self.growing, self._pipeline
        assert pipeline is not None
        oldest = g.blocks[0]
        # Hashed and written first: the threads read the block.
        while pipeline.hashed < oldest.end or (pipeline.storing and pipeline.written < oldest.end):
            if pipeline.hash_error is not None:
                raise pipeline.hash_error
            await pipeline.progressed()
            await self._check_storing()
        self._progress()  # what readers behind the window read now is the file
        if g.relaying:
            # Memory is the only place these bytes are: every reader needs them first.
            while (slowest := g.slowest_reader()) is not None and slowest < oldest.end:
                await g.reader_moved()
        else:
            lead = g.leading_reader()
            if lead is not None and oldest.start <= lead < oldest.end:
                try:
                    async with asyncio.timeout(PACE_WAIT):
                        while (lead := g.leading_reader()) is not None and lead < oldest.end:
                            await g.reader_moved()
                except TimeoutError:
                    pass  # a reader this slow reads the file
        g.drop_oldest()

    async def _verify(self) -> None:
        pipeline = self._pipeline
        assert pipeline is not None and self._hasher is not None
        while pipeline.hashed < pipeline.fed and pipeline.hash_error is None:
            await pipeline.progressed()
        if pipeline.hash_error is not None:
            raise pipeline.hash_error
        try:
            self._hasher.verify()
        except storage.DigestMismatch as exc:
            raise DigestMismatch(f"upstream sent the wrong bytes: {exc}") from exc
