"""The leader's memory window: readers never wait for the disk, memory stays bounded, and a
blob that cannot be stored (a full disk) still reaches its readers, relayed.

The disks are real files with a misbehaving write path (`tests.fetch.disks`); the
upstream is the in-process fake.
"""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import pytest

from lazyreg.db import leases
from lazyreg.db.artifacts import is_stored
from lazyreg.db.engine import Database
from lazyreg.fetch import Phase, leader
from lazyreg.fetch.blocks import BLOCK
from lazyreg.fetch.growing import BytesGone
from lazyreg.storage.filesystem import FilesystemStaged, FilesystemStore
from lazyreg.storage.layout import digest_of
from tests.fetch.conftest import fetcher
from tests.fetch.disks import QuotaDisk, SlowDisk
from tests.fetch.fakes import FakeUpstream
from tests.fetch.test_fetcher import (
    DATA,
    DIGEST,
    HALF,
    WAIT,
    Reader,
    done,
    lease_state,
    no_backoff,  # noqa: F401  (an autouse fixture, used here too)
    source,
)
from tests.storage.conftest import leftovers

BIG = os.urandom(4 * BLOCK + 12_345)  # more than a window of two blocks
BIG_DIGEST = digest_of(BIG)


@pytest.fixture
def two_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A window of two blocks, so that a few MiB overflow it."""
    monkeypatch.setattr(leader, "WINDOW_BLOCKS", 2)


class PausedReader(Reader):
    """A reader that stops taking bytes after `pause_at` until `go` is set."""

    def __init__(self, body: object, pause_at: int) -> None:
        self.go = asyncio.Event()
        self.paused = asyncio.Event()
        self.pause_at = pause_at
        super().__init__(body)  # type: ignore[arg-type]

    async def _read(self) -> bytes:
        try:
            async for reader, offset, count in self.body.spans(0, self.body.size):
                while count:
                    data = await reader.read(offset, count)
                    assert data
                    self.received += data
                    offset, count = offset + len(data), count - len(data)
                self.progress.set()
                if len(self.received) >= self.pause_at and not self.go.is_set():
                    self.paused.set()
                    await self.go.wait()
        finally:
            self.body.close()
        return bytes(self.received)


async def test_the_first_reader_never_waits_for_the_disk(tmp_path: Path, db: Database) -> None:
    disk = SlowDisk(tmp_path / "storage")  # takes no byte until the gate opens
    up = FakeUpstream(DATA)
    up.hold_at = HALF
    f = fetcher(tmp_path, db, disk)
    growing = f.join(DIGEST, len(DATA), source(up), keep=True)
    reader = Reader(growing.attach())
    try:
        await reader.until(HALF)  # at the upstream's pace: all it sent so far
        assert disk.appended == 0
        up.release.set()
        # Every byte, the last one too (the digest was checked), with none on disk yet.
        assert await reader.result() == DATA
        assert growing.phase is Phase.VERIFIED
        assert disk.appended == 0
        assert await disk.stat(DIGEST) is None
    finally:
        disk.gate.set()
    await done(f)
    assert disk.appended == len(DATA)
    assert await disk.stat(DIGEST) == len(DATA)
    assert await db.read(lambda s: is_stored(s, DIGEST))
    assert leftovers(disk) == []


async def test_memory_is_bounded_by_the_window_when_the_disk_lags(
        tmp_path: Path, db: Database, two_blocks: None) -> None:
    disk = SlowDisk(tmp_path / "storage")
    up = FakeUpstream(BIG, chunk=256 * 1024)
    f = fetcher(tmp_path, db, disk)
    growing = f.join(BIG_DIGEST, len(BIG), source(up), keep=True)
    reader = Reader(growing.attach())
    try:
        await reader.until(2 * BLOCK)  # the window's worth comes at once...
        for _ in range(50):
            await asyncio.sleep(0)
        # ...and no more: the download waits for the disk, holding two blocks.
        assert growing.received == 2 * BLOCK
        assert len(growing.blocks) == 2
        assert len(reader.received) == 2 * BLOCK
        assert f.pool.in_use == 2
    finally:
        disk.gate.set()
    assert await reader.result() == BIG
    await done(f, BIG_DIGEST)
    assert await disk.stat(BIG_DIGEST) == len(BIG)
    assert f.pool.in_use == 0  # every block went back


async def test_a_reader_that_does_not_keep_up_does_not_hold_the_download(
        tmp_path: Path, db: Database, two_blocks: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leader, "PACE_WAIT", 0.01)
    store = FilesystemStore(tmp_path / "storage")
    up = FakeUpstream(BIG, chunk=256 * 1024)
    f = fetcher(tmp_path, db, store)
    growing = f.join(BIG_DIGEST, len(BIG), source(up), keep=True)
    stuck = PausedReader(growing.attach(), pause_at=1000)  # stops in the first block
    async with asyncio.timeout(WAIT):
        await stuck.paused.wait()
    await done(f, BIG_DIGEST)  # the whole blob was fetched and stored meanwhile
    assert await store.stat(BIG_DIGEST) == len(BIG)
    assert len(stuck.received) < BLOCK
    stuck.go.set()
    assert await stuck.result() == BIG  # the rest from the file


async def test_a_blob_that_cannot_be_stored_is_relayed_to_every_reader(
        tmp_path: Path, db: Database, two_blocks: None) -> None:
    disk = QuotaDisk(tmp_path / "storage", quota=BLOCK)  # room for one block only
    up = FakeUpstream(BIG, chunk=256 * 1024)
    f = fetcher(tmp_path, db, disk)
    growing = f.join(BIG_DIGEST, len(BIG), source(up), keep=True)
    fast = Reader(growing.attach())
    slow = PausedReader(growing.attach(), pause_at=BLOCK // 2)
    async with asyncio.timeout(WAIT):
        await slow.paused.wait()
        while not growing.relaying:
            await asyncio.sleep(0.01)
    # Relaying, the window waits for its slowest reader: memory is all there is.
    # The half-written staging file goes as the relay starts (an abort in the
    # background, which a busy machine may run a moment later).
    async with asyncio.timeout(WAIT):
        while leftovers(disk):
            await asyncio.sleep(0.01)
    for _ in range(50):
        await asyncio.sleep(0)
    # Memory holds at most the window past what the slowest reader has read, or past
    # what landed on disk before the disk filled, if the download got that far
    # (then the slow reader reads those bytes from the file it holds open).
    assert growing.received <= max(len(slow.received), growing.landed) + 2 * BLOCK
    slow.go.set()
    assert await fast.result() == BIG
    assert await slow.result() == BIG
    await done(f, BIG_DIGEST)
    assert growing.phase is Phase.VERIFIED
    assert await disk.stat(BIG_DIGEST) is None
    assert not await db.read(lambda s: is_stored(s, BIG_DIGEST))
    # Another process following the staging file must not trust what it read.
    assert await lease_state(db, BIG_DIGEST) is leases.LeaseState.FAILED
    assert leftovers(disk) == []
    assert f.pool.in_use == 0


async def test_a_reader_too_late_for_a_relay_gets_a_clear_error(
        tmp_path: Path, db: Database, two_blocks: None) -> None:
    disk = QuotaDisk(tmp_path / "storage", quota=0)  # full from the start
    up = FakeUpstream(BIG, chunk=256 * 1024)
    up.hold_at = 3 * BLOCK  # the window has moved past byte 0 by then
    f = fetcher(tmp_path, db, disk)
    growing = f.join(BIG_DIGEST, len(BIG), source(up), keep=True)
    first = Reader(growing.attach())
    await first.until(3 * BLOCK)
    late = Reader(growing.attach())
    with pytest.raises(BytesGone, match="could not be stored"):
        await late.result()
    assert late.received == b""
    up.release.set()
    assert await first.result() == BIG
    await done(f, BIG_DIGEST)


async def test_storage_that_cannot_even_stage_relays(
        tmp_path: Path, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FilesystemStore(tmp_path / "storage")

    async def no_room(digest: str, size: int) -> FilesystemStaged:
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(store, "stage", no_room)
    f = fetcher(tmp_path, db, store)
    reader = Reader(f.join(DIGEST, len(DATA), source(FakeUpstream(DATA)), keep=True).attach())
    assert await reader.result() == DATA
    await done(f)
    assert await store.stat(DIGEST) is None
    with pytest.raises(OSError, match="No space"):
        await f.fetch(DIGEST, len(DATA), source(FakeUpstream(DATA)), kind="layer")


async def test_a_relayed_blob_with_the_wrong_digest_still_fails(
        tmp_path: Path, db: Database) -> None:
    disk = QuotaDisk(tmp_path / "storage", quota=0)
    up = FakeUpstream(DATA)
    up.corrupt = True
    f = fetcher(tmp_path, db, disk)
    reader = Reader(f.join(DIGEST, len(DATA), source(up), keep=True).attach())
    with pytest.raises(Exception, match="wrong bytes"):
        await reader.result()
    assert len(reader.received) == len(DATA) - 1  # never the last byte of a bad blob
    await done(f)
