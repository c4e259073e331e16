"""Hash and store one download's bytes, each in a thread of its own, while the event loop receives.

The leader `feed`s each received piece (a span of a block); a hasher thread
feeds them to the staged blob's hash (`StagedBlob.update`) and a writer thread
stores them (`StagedBlob.append`), both in order, each merging the pieces
queued for it that follow each other in one block into one call.
The writer holds back the last partial page of what it has while more is on its
way (at most TAIL_WAIT seconds), so that the disk gets whole pages (O_DIRECT,
see `lazyreg.storage.filesystem`) when the bytes come fast, and every byte soon
when they pause. hashlib and the write system
calls release the GIL, so receiving, hashing and writing overlap; and because
hashing does not wait for the disk, the digest is known as soon as the last byte
is hashed, however far behind the disk is.

- `hashed` and `written` say how far each thread got. The loop hears of progress
  only while it waits for some (`progressed`), through one pending callback at a
  time: a thread waking the loop for every piece cost more than the piece.
- A write that fails (a full disk, an I/O error) stops the storing, not the
  hashing: `write_error` is set and the leader relays the blob without storing it.
  A hashing failure is `hash_error`; the leader fails the download on it.
- `settle()` returns once every piece fed is hashed and, unless storing
  stopped, written; it waits through a cancellation (raised again after), so no
  thread touches the staged blob after its owner closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Protocol

from lazyreg.storage.base import Chunk

log = logging.getLogger(__name__)

_STOP = None
PAGE = 4096  # the writer's unit while more bytes are coming
TAIL_WAIT = 0.01  # seconds the writer holds back a partial page for more bytes

Piece = tuple[memoryview, int, int]  # a block's view, and the span [lo, hi) of it


def _merged(q: queue.SimpleQueue[Piece | None], first: Piece
            ) -> tuple[Piece, Piece | bool | None]:
    """`first` and the pieces queued right after it in the same block, as one; and the
    next item taken that does not follow it (False: none)."""
    view, lo, hi = first
    while True:
        try:
            item = q.get_nowait()
        except queue.Empty:
            return (view, lo, hi), False
        if item is _STOP or item[0] is not view or item[1] != hi:
            return (view, lo, hi), item
        hi = item[2]


class Target(Protocol):
    """What the threads work on: a `StagedBlob`, or a hash alone for a blob not stored."""

    @property
    def size(self) -> int: ...

    @property
    def written(self) -> int: ...

    def update(self, data: Chunk) -> None: ...

    def append(self, data: Chunk) -> None: ...


class Pipeline:
    def __init__(self, staged: Target, on_progress: Callable[[], None]) -> None:
        self.staged = staged
        self._loop = asyncio.get_running_loop()
        self._on_progress = on_progress
        self.fed = 0  # bytes handed to the threads (the loop's count)
        self._not_queued = 0  # bytes fed after storing stopped (the loop's count)
        self.hashed = 0  # bytes hashed (the hasher's count)
        self.written = 0  # bytes stored (the writer's count)
        self._hash_done = 0  # bytes the hasher is through with, hashed or skipped
        self._write_done = 0  # bytes the writer is through with, written or dropped
        self.storing = True
        self.write_error: BaseException | None = None
        self.hash_error: BaseException | None = None
        self._hash_queue: queue.SimpleQueue[Piece | None] = queue.SimpleQueue()
        self._write_queue: queue.SimpleQueue[Piece | None] = queue.SimpleQueue()
        self._notify_pending = False
        self._want = False  # the loop waits for progress: the threads wake it
        self._seq = 0  # bumped by the threads at each piece done
        self._seq_seen = 0  # what the loop had seen of it
        self._progress = asyncio.Event()
        self._threads = [
            threading.Thread(target=self._hash_loop, name="blob-hasher", daemon=True),
            threading.Thread(target=self._write_loop, name="blob-writer", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # ------------------------------------------------------------ the loop's side

    def feed(self, view: memoryview, lo: int, hi: int) -> None:
        """The next bytes of the blob, `view[lo:hi]`, unchanged until `settle`d."""
        self.fed += hi - lo
        piece = (view, lo, hi)
        self._hash_queue.put(piece)
        if self.storing:
            self._write_queue.put(piece)
        else:
            self._not_queued += hi - lo

    def stop_storing(self) -> None:
        """Write nothing more (what was queued is dropped); hashing goes on."""
        self.storing = False

    @property
    def idle(self) -> bool:
        """Neither thread has anything left to do, or is doing it."""
        return (self._hash_done == self.fed
                and self._write_done + self._not_queued == self.fed)

    async def progressed(self) -> None:
        """Until the threads got further (or failed) than when the loop last looked."""
        event = self._progress
        self._want = True
        if self._seq != self._seq_seen:  # they did, before they knew anyone waited
            self._seq_seen = self._seq
            return
        await event.wait()

    async def settle(self) -> None:
        """Until neither thread has work left or under way; see the module doc."""
        cancelled = False
        while not self.idle:
            try:
                await asyncio.shield(self.progressed())
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError

    def close(self) -> None:
        """Let the threads end (after `settle`, they hold nothing)."""
        self._hash_queue.put(_STOP)
        self._write_queue.put(_STOP)

    def _wake(self) -> None:
        self._notify_pending = False  # first: progress made after this schedules again
        self._want = False
        self._seq_seen = self._seq
        event, self._progress = self._progress, asyncio.Event()
        event.set()
        self._on_progress()

    # ------------------------------------------------------------ the threads

    def _notify(self) -> None:
        self._seq += 1  # first: a loop that starts waiting after this sees it
        if self._want and not self._notify_pending:
            self._notify_pending = True
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                self._loop.call_soon_threadsafe(self._wake)

    def _hash_loop(self) -> None:
        q = self._hash_queue
        item: Piece | bool | None = False
        while True:
            if item is False:
                item = q.get()
            if item is _STOP:
                return
            assert isinstance(item, tuple)
            (view, lo, hi), item = _merged(q, item)
            if self.hash_error is None:
                try:
                    self.staged.update(view[lo:hi])
                    self.hashed += hi - lo
                except BaseException as exc:  # reported to the loop, never lost in the thread
                    self.hash_error = exc
            self._hash_done += hi - lo
            self._notify()

    def _write_loop(self) -> None:
        q = self._write_queue
        held: Piece | None = None  # received, not written yet: at most a partial page
        item: Piece | bool | None = False
        while True:
            if item is False:
                try:
                    item = q.get(timeout=TAIL_WAIT) if held is not None else q.get()
                except queue.Empty:  # nothing more for now: write what is held
                    assert held is not None
                    self._write(held, whole=True)
                    held, item = None, False
                    continue
            if item is _STOP:
                return
            assert isinstance(item, tuple)
            piece, item = _merged(q, item)
            if held is not None:
                if held[0] is piece[0] and held[2] == piece[1]:
                    piece = (held[0], held[1], piece[2])
                else:
                    self._write(held, whole=True)
            held = self._write(piece, whole=item is not False)

    def _write(self, piece: Piece, whole: bool) -> Piece | None:
        """Write `piece` (all of it, or its whole pages only); what is left of it."""
        view, lo, hi = piece
        if self.storing:
            try:
                start = self.staged.written
                end = start + hi - lo
                if not whole and end < self.staged.size:
                    end -= end % PAGE
                if end > start:
                    self.staged.append(view[lo:lo + end - start])
                    self.written += end - start
                    self._write_done += end - start
                    lo += end - start
            except BaseException as exc:  # the leader relays instead of storing
                self.write_error = exc
                self.storing = False
        if not self.storing:
            self._write_done += hi - lo
            lo = hi
        self._notify()
        return (view, lo, hi) if lo < hi else None
