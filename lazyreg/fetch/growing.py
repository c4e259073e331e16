"""A blob on its way into storage, as its readers see it: bytes landing, then verified or failed.

One `Growing` per blob in flight in this process. Whoever fills it (the leader
that downloads it here, or the follower of another process's download) tells
it where the landed bytes can be read and how far they reach; any number of
readers attach and read. Promises:

- a reader gets every byte of the range it asked for, in order, as it lands,
  and never the blob's last byte before the digest was verified: the reader of
  a bad download sees an error, never a complete wrong blob;
- every reader sees the same outcome (on failure, the same exception);
- readers come and go freely: none keeps the fill from going on, and the fill
  never waits for a reader;
- the place the bytes are read from may change under the readers (another
  process's staging, then our own after a takeover, then storage): each span
  comes with the reader it is read from, and that reader stays open until the
  reader's body is closed. A reader shared by every body is closed with its last user.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from enum import Enum

from lazyreg.fetch.body import Span
from lazyreg.storage.base import BlobReader


class Phase(Enum):
    RUNNING = "running"  # bytes may still land
    VERIFIED = "verified"  # every byte landed and matched the digest
    FAILED = "failed"  # it will not complete; `error` says why


class FetchStopped(Exception):
    """The fill ended without saying how: readers must not wait for bytes that will not come."""


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


class Growing:
    def __init__(self, digest: str, size: int) -> None:
        self.digest = digest
        self.size = size
        self.phase = Phase.RUNNING
        self.error: BaseException | None = None
        self.landed = 0  # bytes readable from the current source, from offset 0
        self.closed = False  # no reader may attach any more
        self._source: _Shared | None = None
        self._bodies: set[GrowingBody] = set()
        self._changed = asyncio.Event()

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
        """From now on the bytes are read from `reader`, `landed` of them so far."""
        shared = _Shared(reader)
        for body in self._bodies:
            body.hold(shared.take())
        old, self._source = self._source, shared
        self.landed = min(landed, self.size)
        if old is not None:
            old.drop()
        self._notify()

    def landed_of_source(self) -> int:
        """What the current source says has landed (for a fill that cannot count it itself)."""
        return self._source.reader.landed() if self._source is not None else 0

    def advance(self, landed: int) -> None:
        if landed > self.landed:
            self.landed = min(landed, self.size)
            self._notify()

    def verified(self) -> None:
        self.phase = Phase.VERIFIED
        self.landed = self.size
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
        self._notify()

    # ------------------------------------------------------------ readers

    def attach(self) -> GrowingBody | None:
        """A new reader's body; None once the fill is over (look in storage instead)."""
        if self.closed:
            return None
        body = GrowingBody(self)
        if self._source is not None:
            body.hold(self._source.take())
        self._bodies.add(body)
        return body

    def _detach(self, body: GrowingBody) -> None:
        self._bodies.discard(body)

    async def changed(self) -> None:
        await self._changed.wait()


class GrowingBody:
    """One reader's view of a `Growing` blob (see `lazyreg.fetch.body.BlobBody`)."""

    def __init__(self, growing: Growing) -> None:
        self._growing = growing
        self._held: list[_Shared] = []
        self.digest = growing.digest
        self.size = growing.size

    def hold(self, shared: _Shared) -> None:
        self._held.append(shared)

    async def spans(self, start: int, end: int) -> AsyncGenerator[Span, None]:
        g = self._growing
        pos = start
        while pos < end:
            if g.phase is Phase.FAILED:
                assert g.error is not None
                raise g.error
            limit = end if g.phase is Phase.VERIFIED else min(end, g.size - 1)
            limit = min(limit, g.landed)
            if pos < limit and self._held:
                yield self._held[-1].reader, pos, limit - pos
                pos = limit
                continue
            # Nothing awaited since the checks above: any change from here on
            # sets the event being waited for.
            await g.changed()

    def close(self) -> None:
        for shared in self._held:
            shared.drop()
        self._held.clear()
        self._growing._detach(self)
