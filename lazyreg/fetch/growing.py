"""A blob on its way into storage, as its readers see it: bytes arriving, then verified or failed.

One `Growing` per blob in flight in this process. Whoever fills it (the leader
that downloads it here, or the follower of another process's download) tells
it where the bytes can be read and how far they reach; any number of readers
attach and read. The bytes are in two places:

- memory: the leader receives into blocks (`lazyreg.fetch.blocks`), the
  *window* of the last few it received, and a reader whose position is in the
  window reads from there, as soon as the bytes arrive, whether or not the disk
  has them yet: the first reader never waits for the disk;
- the file (`landed` bytes from offset 0 of the current source: our staging,
  another process's, or storage): readers behind the window, and late joiners,
  read there.

Promises:

- a reader gets every byte of the range it asked for, in order, as it arrives,
  and never the blob's last byte before the digest was verified: the reader of
  a bad download sees an error, never a complete wrong blob;
- every reader sees the same outcome (on failure, the same exception);
- readers come and go freely: none keeps the fill from going on for long. The
  leader waits for its *leading* reader (the furthest one, when it is in the
  window's oldest block) at most PACE_WAIT per block, so that a client that keeps
  up reads from memory; a slower one falls behind the window and reads the file.
  Only when the blob cannot be stored (`relaying`: a full disk) does the window
  wait for every reader, since memory is then the only place the bytes are; a
  reader that then asks for bytes already gone gets `BytesGone`;
- the place the file bytes are read from may change under the readers (another
  process's staging, then our own after a takeover, then storage): each span
  comes with the reader it is read from, and that reader stays open until the
  reader's body is closed. A reader shared by every body is closed with its last user.
- a span read from memory (`reader.file` is None) is a view of a block that stays
  valid until the body is asked for its next span, or closed;
- the window is given back (`Block.retire`) when the fill is over, and either the
  file has every byte or no body is attached any more.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator
from enum import Enum

from lazyreg.fetch.blocks import BLOCK, Block
from lazyreg.fetch.body import Span
from lazyreg.storage.base import BlobReader, Chunk


class Phase(Enum):
    RUNNING = "running"  # bytes may still come
    VERIFIED = "verified"  # every byte came and matched the digest
    FAILED = "failed"  # it will not complete; `error` says why


class FetchStopped(Exception):
    """The fill ended without saying how: readers must not wait for bytes that will not come."""


class BytesGone(Exception):
    """A blob that could not be stored is only relayed, and the bytes asked for went by."""


class _Shared:
    """One reader of the landed bytes, shared by the fill side and every body."""

    def __init__(self, reader: BlobReader) -> None:
        self.reader = reader
        self.users = 1

    def take(self) -> _Shared:
        self.users += 1
        return self

    def drop(self) -> None:
        self.users -= 1
        if self.users == 0:
            self.reader.close()


class BlockReader:
    """The bytes of one block in the window, read as views (no copy)."""

    def __init__(self, block: Block) -> None:
        self._block = block

    @property
    def file(self) -> None:
        return None

    def landed(self) -> int:
        return self._block.end

    async def read(self, offset: int, count: int) -> Chunk:
        block = self._block
        lo = offset - block.start
        return block.view[lo:min(lo + count, block.filled)]

    def close(self) -> None:
        pass


class Growing:
    def __init__(self, digest: str, size: int) -> None:
        self.digest = digest
        self.size = size
        self.phase = Phase.RUNNING
        self.error: BaseException | None = None
        self.landed = 0  # bytes readable from the current source, from offset 0
        self.received = 0  # bytes received into the window (its end)
        self.relaying = False  # storing failed: the window is all there is past `landed`
        self.closed = False  # no reader may attach any more
        # This process downloads it from the upstream (rather than following another's);
        # its first reader caused that download, every later one joined it.
        self.led = False
        self.attached = 0  # readers that ever attached
        self.blocks: deque[Block] = deque()  # the window, oldest first, contiguous
        self._source: _Shared | None = None
        self._bodies: set[GrowingBody] = set()
        self._changed = asyncio.Event()
        self._moved = asyncio.Event()

    # ------------------------------------------------------------ the fill side

    @property
    def readers(self) -> int:
        return len(self._bodies)

    @property
    def has_source(self) -> bool:
        return self._source is not None

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def set_source(self, reader: BlobReader, landed: int = 0) -> None:
        """From now on the file bytes are read from `reader`, `landed` of them so far."""
        shared = _Shared(reader)
        for body in self._bodies:
            body.hold(shared.take())
        old, self._source = self._source, shared
        self.landed = min(landed, self.size)
        if old is not None:
            old.drop()
        self._notify()

    def source_reader(self) -> BlobReader | None:
        """Where the file bytes are read from now."""
        return self._source.reader if self._source is not None else None

    def landed_of_source(self) -> int:
        """What the current source says has landed (for a fill that cannot count it itself)."""
        return self._source.reader.landed() if self._source is not None else 0

    def advance(self, landed: int) -> None:
        """The file has `landed` bytes now."""
        if landed > self.landed:
            self.landed = min(landed, self.size)
            if self.landed > self.received:  # readers wait only past the window's end
                self._notify()

    def receive(self, block: Block | None, received: int) -> None:
        """`received` bytes are in the window now; `block`, if any, joins it (newest)."""
        if block is not None:
            self.blocks.append(block)
        self.received = received
        self._notify()

    def drop_oldest(self) -> None:
        self.blocks.popleft().retire()

    def clear_window(self) -> None:
        while self.blocks:
            self.drop_oldest()
        self.received = 0

    @property
    def window_start(self) -> int:
        return self.blocks[0].start if self.blocks else self.received

    def leading_reader(self) -> int | None:
        """The position of the furthest reader, None without readers."""
        return max((b.pos for b in self._bodies), default=None)

    def slowest_reader(self) -> int | None:
        return min((b.pos for b in self._bodies), default=None)

    async def reader_moved(self) -> None:
        """Until a reader moves on, or leaves."""
        event = self._moved
        await event.wait()

    def _reader_moved(self) -> None:
        self._moved.set()
        self._moved = asyncio.Event()

    def verified(self) -> None:
        """Every byte is in the window or the file, and matched the digest."""
        self.phase = Phase.VERIFIED
        self._notify()

    def fail(self, error: BaseException) -> None:
        if self.phase is Phase.RUNNING:
            self.phase, self.error = Phase.FAILED, error
            self._notify()

    def close(self) -> None:
        """The fill is over: refuse new readers and let go of the fill side's reader."""
        self.fail(FetchStopped(f"the fetch of {self.digest} stopped"))
        self.closed = True
        if self._source is not None:
            self._source.drop()
            self._source = None
        if not self._bodies or self.landed >= self.size:
            self.clear_window()  # readers still attached have it all in the file
        self._notify()

    # ------------------------------------------------------------ readers

    def attach(self) -> GrowingBody | None:
        """A new reader's body; None once the fill is over (look in storage instead)."""
        if self.closed:
            return None
        body = GrowingBody(self)
        self.attached += 1
        body.first = self.attached == 1
        if self._source is not None:
            body.hold(self._source.take())
        self._bodies.add(body)
        return body

    def _detach(self, body: GrowingBody) -> None:
        self._bodies.discard(body)
        self._reader_moved()
        if self.closed and not self._bodies:
            self.clear_window()

    def block_at(self, pos: int) -> Block | None:
        """The block of the window holding `pos`, if it is in the window."""
        if not self.blocks:
            return None
        i = pos // BLOCK - self.blocks[0].start // BLOCK
        return self.blocks[i] if 0 <= i < len(self.blocks) else None

    async def changed(self) -> None:
        await self._changed.wait()


class GrowingBody:
    """One reader's view of a `Growing` blob (see `lazyreg.fetch.body.BlobBody`)."""

    def __init__(self, growing: Growing) -> None:
        self._growing = growing
        self._held: list[_Shared] = []
        self.digest = growing.digest
        self.size = growing.size
        self.pos = 0  # every byte before it was read (the leader paces itself on this)
        self.first = False  # the first reader of the blob's flight in this process

    @property
    def joined(self) -> bool:
        """Whether this reader joined a download (rather than caused it): decided once the
        first span came, when the flight knows whether it leads or follows."""
        return not (self.first and self._growing.led)

    def hold(self, shared: _Shared) -> None:
        self._held.append(shared)

    async def spans(self, start: int, end: int) -> AsyncGenerator[Span, None]:
        g = self._growing
        pos = self.pos = start
        if g.relaying and g.landed < g.window_start and start < g.window_start and end > g.landed:
            # Said before the first byte, so that the client gets a clean error.
            raise BytesGone(f"the blob {g.digest} could not be stored and is only relayed:"
                            f" bytes from {max(start, g.landed)} went by; retry")
        pinned: Block | None = None
        try:
            while pos < end:
                if g.phase is Phase.FAILED:
                    assert g.error is not None
                    raise g.error
                limit = end if g.phase is Phase.VERIFIED else min(end, g.size - 1)
                block = g.block_at(pos)
                if block is not None and pos < min(limit, block.end):
                    count = min(limit, block.end) - pos
                    pinned = block
                    block.pin()
                    yield BlockReader(block), pos, count
                    pinned = None
                    block.unpin()
                elif pos < min(limit, g.landed) and self._held:
                    count = min(limit, g.landed) - pos
                    yield self._held[-1].reader, pos, count
                elif g.relaying and g.landed <= pos < g.window_start:
                    raise BytesGone(f"the blob {g.digest} could not be stored and is only"
                                    f" relayed: bytes from {pos} went by; retry")
                else:
                    # Nothing awaited since the checks above: any change from here on
                    # sets the event being waited for.
                    await g.changed()
                    continue
                pos += count
                self.pos = pos
                g._reader_moved()
        finally:
            if pinned is not None:
                pinned.unpin()

    def close(self) -> None:
        for shared in self._held:
            shared.drop()
        self._held.clear()
        self._growing._detach(self)
