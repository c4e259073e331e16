"""Hash and store one download's bytes, each in a thread of its own, while the event loop receives.

The leader `feed`s each received piece (a view of a block); a hasher thread
feeds them to the staged blob's hash (`StagedBlob.update`) and a writer thread
stores them (`StagedBlob.append`), both in order. hashlib and the write system
calls release the GIL, so receiving, hashing and writing overlap; and because
hashing does not wait for the disk, the digest is known as soon as the last byte
is hashed, however far behind the disk is.

- `hashed` and `written` say how far each thread got; the loop hears of progress
  through one pending callback at a time, however many pieces the threads did.
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

from lazyreg.storage.base import StagedBlob

log = logging.getLogger(__name__)

_STOP = None


class Pipeline:
    def __init__(self, staged: StagedBlob, on_progress: Callable[[], None]) -> None:
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
        self._hash_queue: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
        self._write_queue: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
        self._notify_pending = False
        self._progress = asyncio.Event()
        self._threads = [
            threading.Thread(target=self._hash_loop, name="blob-hasher", daemon=True),
            threading.Thread(target=self._write_loop, name="blob-writer", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # ------------------------------------------------------------ the loop's side

    def feed(self, piece: memoryview) -> None:
        """The next bytes of the blob; `piece` must stay unchanged until `settle`d."""
        self.fed += len(piece)
        self._hash_queue.put(piece)
        if self.storing:
            self._write_queue.put(piece)
        else:
            self._not_queued += len(piece)

    def stop_storing(self) -> None:
        """Write nothing more (what was queued is dropped); hashing goes on."""
        self.storing = False

    @property
    def idle(self) -> bool:
        """Neither thread has anything left to do, or is doing it."""
        return (self._hash_done == self.fed
                and self._write_done + self._not_queued == self.fed)

    async def progressed(self) -> None:
        """Until the threads got further, or failed."""
        event = self._progress
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
        event, self._progress = self._progress, asyncio.Event()
        event.set()
        self._on_progress()

    # ------------------------------------------------------------ the threads

    def _notify(self) -> None:
        if not self._notify_pending:
            self._notify_pending = True
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                self._loop.call_soon_threadsafe(self._wake)

    def _hash_loop(self) -> None:
        while (piece := self._hash_queue.get()) is not _STOP:
            if self.hash_error is None:
                try:
                    self.staged.update(piece)
                    self.hashed += len(piece)
                except BaseException as exc:  # reported to the loop, never lost in the thread
                    self.hash_error = exc
            self._hash_done += len(piece)
            self._notify()

    def _write_loop(self) -> None:
        while (piece := self._write_queue.get()) is not _STOP:
            if self.storing:
                try:
                    self.staged.append(piece)
                    self.written += len(piece)
                except BaseException as exc:  # the leader relays instead of storing
                    self.write_error = exc
                    self.storing = False
            self._write_done += len(piece)
            self._notify()
