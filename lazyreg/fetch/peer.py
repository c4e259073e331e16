"""A download led by another server of the cluster, read from that server's internal endpoint.

When a blob's lease names another server (its `cluster_url`), the flight of
this process follows that download (`lazyreg.fetch.follower`) with a
`PeerReader` as the source of its `Growing`: one more kind of `BlobReader`,
read the way a client of this node reads a growing blob. Nothing read from a
peer is stored here; the leader stores the blob, in the storage every node
shares.

- `landed()` is what the leader has received, learned by long polls of its
  progress (`GET <url>/_cluster/blobs/<digest>/progress?after=N`, answered as
  soon as more has landed, or after about a second), rounded down to whole
  blocks until the blob is whole: readers then ask for whole blocks, which
  every reader of this process shares;
- `read` takes the blocks it needs from a small cache (CACHE_BLOCKS), or reads
  each once with a ranged GET (`<url>/_cluster/blobs/<digest>`), however many
  readers want it at once;
- every request is signed with the cluster's secret (`lazyreg.clusterauth`),
  has a timeout, and reads at most what it asked for;
- a peer that cannot be read (it died, say) is the lease's business: the
  follower sees the download lost and takes it over, or follows whoever did.
  Meanwhile a read of that peer waits (HANDOVER_WAIT at most) for the bytes to
  land from the `Growing`'s next source, and reads them there (or from the peer
  again, tried every PEER_RETRY while it is still the source): the clients of
  this server stay connected through the takeover. Only past that wait, or when
  the download failed, is it an `OSError` for the reader that asked (its client
  is cut, and may retry).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict

import aiohttp

from lazyreg.clusterauth import HEADER, sign
from lazyreg.fetch.blocks import BLOCK
from lazyreg.fetch.growing import Growing, Phase
from lazyreg.storage.base import Chunk

log = logging.getLogger(__name__)

CACHE_BLOCKS = 8  # blocks of a followed blob kept in memory for this process's readers
BLOCK_TIMEOUT = 60.0  # seconds for one block from a peer (it may wait for the upstream)
PROGRESS_TIMEOUT = 15.0  # seconds for one progress answer (the peer waits about 1 s)
MAX_PROGRESS_BYTES = 4096  # a progress answer is a small JSON object
RETRY = 0.2  # seconds before asking a peer that failed again
HANDOVER_WAIT = 120.0  # seconds a read of a lost peer waits for the takeover's bytes
PEER_RETRY = 1.0  # seconds between two tries of a peer that failed, while it is the source


def blob_path(digest: str) -> str:
    return f"/_cluster/blobs/{digest}"


def progress_path(digest: str) -> str:
    return f"/_cluster/blobs/{digest}/progress"


class PeerError(OSError):
    """A peer's bytes could not be read."""


class PeerClient:
    """This process's requests to its peers; the application owns one per cluster node."""

    def __init__(self, session: aiohttp.ClientSession, secret: str) -> None:
        self._session = session
        self._secret = secret

    def _headers(self, method: str, path: str) -> dict[str, str]:
        return {HEADER: sign(self._secret, method, path)}

    def open(self, url: str, growing: Growing) -> PeerReader:
        """A reader of the download that the server at `url` leads, as `growing`'s source."""
        return PeerReader(self, url.rstrip("/"), growing)

    async def progress(self, url: str, digest: str, after: int) -> tuple[str, int] | None:
        """(state, bytes landed) once more than `after` landed or the state changed; None
        when the peer has neither a download of it nor the blob."""
        path = progress_path(digest)
        timeout = aiohttp.ClientTimeout(total=PROGRESS_TIMEOUT)
        async with self._session.get(url + path, params={"after": str(after)},
                                     headers=self._headers("GET", path),
                                     timeout=timeout) as resp:
            if resp.status == 404:
                return None
            if resp.status != 200:
                raise PeerError(f"peer {url}: progress of {digest}: HTTP {resp.status}")
            raw = await resp.content.read(MAX_PROGRESS_BYTES + 1)
            if len(raw) > MAX_PROGRESS_BYTES:
                raise PeerError(f"peer {url}: progress answer over {MAX_PROGRESS_BYTES} bytes")
            doc = json.loads(raw)
            return str(doc["state"]), int(doc["landed"])

    async def read_range(self, url: str, digest: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of the blob, exactly."""
        path = blob_path(digest)
        headers = {**self._headers("GET", path), "Range": f"bytes={start}-{end - 1}"}
        timeout = aiohttp.ClientTimeout(total=BLOCK_TIMEOUT)
        try:
            async with self._session.get(url + path, headers=headers,
                                         timeout=timeout) as resp:
                if resp.status not in (200, 206) or (resp.status == 200 and start != 0):
                    raise PeerError(f"peer {url}: bytes {start}-{end - 1} of {digest}:"
                                    f" HTTP {resp.status}")
                return await resp.content.readexactly(end - start)
        except (aiohttp.ClientError, asyncio.IncompleteReadError, TimeoutError) as exc:
            raise PeerError(f"peer {url}: bytes {start}-{end - 1} of {digest}:"
                            f" {type(exc).__name__}: {exc}") from exc


class PeerReader:
    """The landed bytes of a peer's download (`lazyreg.storage.base.BlobReader`)."""

    def __init__(self, client: PeerClient, url: str, growing: Growing) -> None:
        self.client, self.url, self.growing = client, url, growing
        self.digest, self.size = growing.digest, growing.size
        self.peer_landed = 0  # what the peer said it has
        self.state = "running"
        self._failed = False  # a read of the peer failed (logged once)
        self._closed = False
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._reading: dict[int, asyncio.Future[bytes]] = {}
        self._watcher: asyncio.Task[None] | None = asyncio.ensure_future(self._watch())

    @property
    def file(self) -> None:
        return None

    def landed(self) -> int:
        n = self.peer_landed
        return n if n >= self.size else n - n % BLOCK

    async def _watch(self) -> None:
        """Learn what landed at the peer, until the blob is whole there, the peer has none,
        or the download has another source (a takeover)."""
        failures = 0
        while self.peer_landed < self.size and self.growing.source_reader() in (None, self):
            try:
                answer = await self.client.progress(self.url, self.digest, self.peer_landed)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError) as exc:
                failures += 1
                if failures == 1:  # the lease says whether it is gone: once is enough
                    log.info("peer %s: progress of %s: %s", self.url, self.digest, exc)
                await asyncio.sleep(RETRY)
                continue
            failures = 0
            if answer is None:
                self.state = "gone"
                return
            self.state, landed = answer
            self.peer_landed = max(self.peer_landed, min(landed, self.size))
            if self.state == "failed":
                return

    async def read(self, offset: int, count: int) -> Chunk:
        try:
            return await self._read(offset, count)
        except PeerError as exc:
            if not self._failed:  # once: the lease, not this log, says what became of it
                self._failed = True
                log.info("%s; waiting for the download's next source", exc)
            return await self._read_after_handover(offset, count, exc)

    async def _read_after_handover(self, offset: int, count: int, error: PeerError) -> Chunk:
        """The bytes, from the source that replaced this one once they landed there."""
        g = self.growing
        try:
            async with asyncio.timeout(HANDOVER_WAIT):
                while True:
                    if g.phase is Phase.FAILED:
                        raise error
                    reader = g.source_reader()
                    if reader is not None and reader is not self:
                        if g.landed >= min(offset + count, g.size):
                            return await reader.read(offset, count)
                        await g.changed()
                        continue
                    try:  # still ours: the peer may be back (a passing network fault)
                        async with asyncio.timeout(PEER_RETRY):
                            await g.changed()
                    except TimeoutError:
                        with contextlib.suppress(PeerError):
                            return await self._read(offset, count)
        except TimeoutError:
            raise error from None

    async def _read(self, offset: int, count: int) -> Chunk:
        end = min(offset + count, self.landed())
        pieces: list[Chunk] = []
        pos = offset
        while pos < end:
            index = pos // BLOCK
            block = await self._block(index)
            lo = pos - index * BLOCK
            hi = min(end - index * BLOCK, len(block))
            pieces.append(memoryview(block)[lo:hi])
            pos += hi - lo
        if len(pieces) == 1:
            return pieces[0]
        return b"".join(pieces)

    async def _block(self, index: int) -> bytes:
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        reading = self._reading.get(index)
        if reading is None:
            start = index * BLOCK
            reading = asyncio.ensure_future(
                self.client.read_range(self.url, self.digest, start,
                                       min(start + BLOCK, self.size)))
            self._reading[index] = reading
            reading.add_done_callback(lambda f: self._read_done(index, f))
        return await asyncio.shield(reading)

    def _read_done(self, index: int, future: asyncio.Future[bytes]) -> None:
        if self._reading.get(index) is future:
            del self._reading[index]
        if future.cancelled() or future.exception() is not None or self._closed:
            return  # failed, or read for a reader closed since
        self._cache[index] = future.result()
        while len(self._cache) > CACHE_BLOCKS:
            self._cache.popitem(last=False)

    def close(self) -> None:
        self._closed = True
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        for reading in self._reading.values():
            reading.cancel()
        self._reading.clear()
        self._cache.clear()

