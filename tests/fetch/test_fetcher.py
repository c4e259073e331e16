"""Single flight and its interleavings: joiners, readers that leave, failures, leaders that die.

Each `Fetcher` here stands for one server process (its own `WorkerId`); two of
them share a database and a storage root as two processes on one host would.
The upstream is an in-process fake (`fakes.FakeUpstream`).
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lazyreg.db import leases
from lazyreg.db.artifacts import is_stored
from lazyreg.db.engine import Database
from lazyreg.fetch import Fetcher, Growing, Phase, Source, leader
from lazyreg.fetch.body import BlobBody
from lazyreg.storage.base import BlobStore
from lazyreg.storage.filesystem import FilesystemStaged, FilesystemStore
from lazyreg.storage.layout import digest_of
from lazyreg.upstream.errors import DigestMismatch
from lazyreg.worker import WorkerId
from tests.fetch.conftest import fetcher
from tests.fetch.fakes import FakeUpstream
from tests.storage.conftest import BACKENDS, leftovers, make_store
from tests.storage.memory import MemoryStore

DATA = os.urandom(300_000 + 17)
DIGEST = digest_of(DATA)
HALF = 150_000
WAIT = 10.0  # seconds any awaited event may take before the test fails


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leader, "RESUME_BACKOFF", 0.0)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return make_store(request.param, tmp_path / "storage")


class Reader:
    """A client reading a body in a task of its own, recording what it received."""

    def __init__(self, body: BlobBody | None, stop_after: int | None = None) -> None:
        assert body is not None
        self.body = body
        self.received = bytearray()
        self.progress = asyncio.Event()
        self.stop_after = stop_after
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> bytes:
        try:
            async for reader, offset, count in self.body.spans(0, self.body.size):
                while count:
                    data = await reader.read(offset, count)
                    assert data
                    self.received += data
                    offset, count = offset + len(data), count - len(data)
                self.progress.set()
                if self.stop_after is not None and len(self.received) >= self.stop_after:
                    break
        finally:
            self.body.close()
        return bytes(self.received)

    async def until(self, size: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.received) < size:
                self.progress.clear()
                await self.progress.wait()

    async def result(self) -> bytes:
        async with asyncio.timeout(WAIT):
            return await self.task


async def done(fetcher: Fetcher, digest: str = DIGEST) -> None:
    """Until the flight of `digest` in `fetcher` is over."""
    flight = fetcher._flights.get(digest)
    if flight is not None and flight.task is not None:
        async with asyncio.timeout(WAIT):
            await asyncio.gather(flight.task, return_exceptions=True)


def open_under(directory: Path) -> list[str]:
    """The files under `directory` this process holds a descriptor on."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith(str(directory)):
            found.append(target)
    return found


def source(up: FakeUpstream) -> list[Source]:
    return [Source(up, "library/x")]


async def lease_state(db: Database, digest: str = DIGEST) -> leases.LeaseState | None:
    view = await db.read(lambda s: leases.get(s, f"blob:{digest}"))
    return view.state if view else None


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process whose identity a test fetcher borrows, so that it can be killed."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


async def test_two_joiners_share_one_download_and_get_bytes_before_it_ends(
        tmp_path: Path, db: Database, store: BlobStore) -> None:
    up = FakeUpstream(DATA)
    up.hold_at = HALF
    f = fetcher(tmp_path, db, store)
    first = f.join(DIGEST, len(DATA), source(up), keep=True)
    second = f.join(DIGEST, len(DATA), source(up), keep=True)
    assert first is second
    readers = [Reader(first.attach()), Reader(second.attach())]
    for reader in readers:
        await reader.until(HALF)  # bytes went out while the download is held midway
    assert first.phase is Phase.RUNNING
    up.release.set()
    assert [await r.result() for r in readers] == [DATA, DATA]
    await done(f)
    assert up.requests == [0]
    assert await store.stat(DIGEST) == len(DATA)
    assert await db.read(lambda s: is_stored(s, DIGEST))
    assert await lease_state(db) is leases.LeaseState.DONE
    assert leftovers(store) == []


async def test_a_reader_that_leaves_does_not_stop_the_download(
        tmp_path: Path, db: Database, store: BlobStore) -> None:
    up = FakeUpstream(DATA)
    up.hold_at = HALF
    f = fetcher(tmp_path, db, store)
    growing = f.join(DIGEST, len(DATA), source(up), keep=True)
    leaving = Reader(growing.attach(), stop_after=1)
    await leaving.result()
    assert growing.readers == 0  # it detached when it left
    up.release.set()
    await done(f)
    assert growing.phase is Phase.VERIFIED
    assert await store.stat(DIGEST) == len(DATA)
    assert await db.read(lambda s: is_stored(s, DIGEST))


async def test_a_failed_verification_reaches_every_reader_without_the_last_byte(
        tmp_path: Path, db: Database, store: BlobStore) -> None:
    up = FakeUpstream(DATA)
    up.corrupt = True
    f = fetcher(tmp_path, db, store)
    growing = f.join(DIGEST, len(DATA), source(up), keep=True)
    readers = [Reader(growing.attach()) for _ in range(3)]
    errors = []
    for reader in readers:
        with pytest.raises(DigestMismatch) as info:
            await reader.result()
        errors.append(info.value)
        assert len(reader.received) == len(DATA) - 1  # all but the last byte
    assert errors[0] is errors[1] is errors[2]
    await done(f)
    assert await store.stat(DIGEST) is None
    assert not await db.read(lambda s: is_stored(s, DIGEST))
    assert await lease_state(db) is leases.LeaseState.FAILED
    assert leftovers(store) == []


async def test_a_relayed_blob_is_not_stored(tmp_path: Path, db: Database,
                                            store: BlobStore) -> None:
    up = FakeUpstream(DATA)
    f = fetcher(tmp_path, db, store)
    growing = f.join(DIGEST, len(DATA), source(up), keep=False)
    reader = Reader(growing.attach())
    assert await reader.result() == DATA
    await done(f)
    assert await store.stat(DIGEST) is None
    assert leftovers(store) == []
    assert await lease_state(db) is leases.LeaseState.DONE


@pytest.mark.parametrize("ignore_range", [False, True])
async def test_a_cut_body_is_resumed(tmp_path: Path, db: Database, store: BlobStore,
                                     ignore_range: bool) -> None:
    up = FakeUpstream(DATA)
    up.cut_at, up.ignore_range = HALF, ignore_range
    f = fetcher(tmp_path, db, store)
    reader = Reader(f.join(DIGEST, len(DATA), source(up), keep=True).attach())
    assert await reader.result() == DATA
    assert up.requests == [0, HALF]
    await done(f)
    assert await store.stat(DIGEST) == len(DATA)


async def test_fetch_waits_until_stored_even_after_joining_a_relay(
        tmp_path: Path, db: Database, store: BlobStore) -> None:
    up = FakeUpstream(DATA)
    up.hold_at = HALF
    f = fetcher(tmp_path, db, store)
    relay = f.join(DIGEST, len(DATA), source(up), keep=False)  # a `streamed` client's
    fetching = asyncio.create_task(f.fetch(DIGEST, len(DATA), source(up), kind="layer"))
    async with asyncio.timeout(WAIT):
        await up.held.wait()
    up.release.set()
    async with asyncio.timeout(WAIT):
        await fetching
    assert relay.phase is Phase.VERIFIED
    assert up.requests == [0, 0]  # the relay, then a download that keeps it
    assert await store.stat(DIGEST) == len(DATA)
    assert await db.read(lambda s: is_stored(s, DIGEST))


async def test_no_descriptor_and_no_staging_while_waiting_for_a_slot(
        tmp_path: Path, db: Database) -> None:
    store = FilesystemStore(tmp_path / "storage")
    blobs = [os.urandom(1000) for _ in range(10)]
    up = FakeUpstream(*blobs, slots=0)
    f = fetcher(tmp_path, db, store)
    flights = [f.join(digest_of(b), len(b), source(up), keep=True) for b in blobs]
    readers = [Reader(g.attach()) for g in flights]
    async with asyncio.timeout(WAIT):
        while up.waiting < len(blobs):
            await asyncio.sleep(0.01)
    assert leftovers(store) == []
    assert not any(g.has_source for g in flights)
    assert open_under(tmp_path / "storage") == []
    up.slots.release()  # one slot: they go one after the other
    assert [await r.result() for r in readers] == blobs


async def test_a_write_error_relays_the_blob_and_awaits_every_write(
        tmp_path: Path, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FilesystemStore(tmp_path / "storage")
    writes: list[bool] = []  # whether each write failed
    real_append = FilesystemStaged.append

    def failing_append(self: FilesystemStaged, data: bytes) -> None:
        # A full disk: a write that goes past half the blob fails, and so would any after it.
        writes.append(self.written + len(data) > HALF or any(writes))
        if writes[-1]:
            raise OSError(28, "No space left on device")
        real_append(self, data)
    monkeypatch.setattr(FilesystemStaged, "append", failing_append)
    unretrieved: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))

    up = FakeUpstream(DATA, chunk=4096)  # many chunks queued behind the failing write
    f = fetcher(tmp_path, db, store)
    growing = f.join(DIGEST, len(DATA), source(up), keep=True)
    readers = [Reader(growing.attach()) for _ in range(2)]
    # The readers get the whole verified blob, relayed from memory, though it is not stored.
    assert [await r.result() for r in readers] == [DATA, DATA]
    await done(f)
    assert growing.phase is Phase.VERIFIED
    assert writes[-1] and writes.count(True) == 1  # no write tried after the failure
    gc.collect()
    await asyncio.sleep(0)
    loop.set_exception_handler(None)
    assert unretrieved == []
    assert leftovers(store) == []  # the partial staging file is gone
    assert await store.stat(DIGEST) is None
    assert not await db.read(lambda s: is_stored(s, DIGEST))
    # Other processes must not trust a staging file that was removed half-written.
    assert await lease_state(db) is leases.LeaseState.FAILED
    # A sync that wanted it stored hears why it is not.
    with pytest.raises(OSError, match="No space"):
        await f.fetch(DIGEST, len(DATA), source(up), kind="layer")
    assert leftovers(store) == []


async def test_a_staged_blob_is_released_when_its_reader_cannot_open(
        tmp_path: Path, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FilesystemStore(tmp_path / "storage")

    def no_descriptor(self: FilesystemStaged) -> Any:
        raise OSError(24, "Too many open files")
    monkeypatch.setattr(FilesystemStaged, "open_reader", no_descriptor)
    f = fetcher(tmp_path, db, store)
    reader = Reader(f.join(DIGEST, len(DATA), source(FakeUpstream(DATA)), keep=True).attach())
    with pytest.raises(OSError, match="Too many"):
        await reader.result()
    await done(f)
    assert leftovers(store) == []
    assert open_under(tmp_path / "storage") == []


# ------------------------------------------------------------ two processes


async def test_a_follower_reads_the_leaders_staging_with_one_upstream_request(
        tmp_path: Path, db: Database) -> None:
    root = tmp_path / "storage"
    a_id, b_id = WorkerId("host-a", 1), WorkerId("host-b", 2)  # live: another host's
    up_a, up_b = FakeUpstream(DATA), FakeUpstream(DATA)
    up_a.hold_at = HALF
    a = fetcher(tmp_path, db, FilesystemStore(root, a_id), a_id)
    b = fetcher(tmp_path, db, FilesystemStore(root, b_id), b_id)
    a.join(DIGEST, len(DATA), source(up_a), keep=True)
    async with asyncio.timeout(WAIT):
        await up_a.held.wait()
    growing = b.join(DIGEST, len(DATA), source(up_b), keep=True)
    follower = Reader(growing.attach())
    await follower.until(HALF)  # from the leader's staging file, while it is held
    up_a.release.set()
    assert await follower.result() == DATA
    await done(a)
    await done(b)
    assert (up_a.requests, up_b.requests) == ([0], [])


async def test_without_shared_staging_a_follower_waits_for_the_commit(
        tmp_path: Path, db: Database) -> None:
    store = MemoryStore()  # like an object store: no staging to share
    a_id, b_id = WorkerId("host-a", 1), WorkerId("host-b", 2)
    up_a, up_b = FakeUpstream(DATA), FakeUpstream(DATA)
    up_a.hold_at = HALF
    a, b = fetcher(tmp_path, db, store, a_id), fetcher(tmp_path, db, store, b_id)
    a.join(DIGEST, len(DATA), source(up_a), keep=True)
    async with asyncio.timeout(WAIT):
        await up_a.held.wait()
    follower = Reader(b.join(DIGEST, len(DATA), source(up_b), keep=True).attach())
    async with asyncio.timeout(WAIT):
        while store.staging_lookups < 3:  # the follower looked, and found nothing to read
            await asyncio.sleep(0.01)
    assert follower.received == b""
    up_a.release.set()
    assert await follower.result() == DATA
    await done(b)
    assert (up_a.requests, up_b.requests) == ([0], [])


async def test_the_leader_dies_and_the_follower_takes_over(
        tmp_path: Path, db: Database, sleeper: subprocess.Popen[bytes]) -> None:
    root = tmp_path / "storage"
    a_id = WorkerId(WorkerId.current().host, sleeper.pid)  # dies when `sleeper` is killed
    b_id = WorkerId.current()
    up_a, up_b = FakeUpstream(DATA), FakeUpstream(DATA)
    up_a.hold_at = HALF
    a = fetcher(tmp_path, db, FilesystemStore(root, a_id), a_id)
    b = fetcher(tmp_path, db, FilesystemStore(root, b_id), b_id)
    a.join(DIGEST, len(DATA), source(up_a), keep=True)
    async with asyncio.timeout(WAIT):
        await up_a.held.wait()
    follower = Reader(b.join(DIGEST, len(DATA), source(up_b), keep=True).attach())
    await follower.until(HALF)

    sleeper.kill()  # process A is gone, as with kill -9: its lease stays `running`
    sleeper.wait()
    assert await follower.result() == DATA  # the same reader, through the takeover
    await done(b)
    # B started from what A had staged, and asked the upstream for the rest only.
    assert len(up_b.requests) == 1 and 0 < up_b.requests[0] <= HALF
    assert await db.read(lambda s: is_stored(s, DIGEST))
    view = await db.read(lambda s: leases.get(s, f"blob:{DIGEST}"))
    assert view is not None and view.owner == b_id
    for flight in list(a._flights.values()):  # what is left of "process A"
        assert flight.task is not None
        flight.task.cancel()
    await done(a)


async def test_a_leader_shutting_down_hands_over_at_once(tmp_path: Path, db: Database) -> None:
    root = tmp_path / "storage"
    a_id, b_id = WorkerId("host-a", 1), WorkerId("host-b", 2)
    up_a, up_b = FakeUpstream(DATA), FakeUpstream(DATA)
    up_a.hold_at = HALF
    a = fetcher(tmp_path, db, FilesystemStore(root, a_id), a_id)
    b = fetcher(tmp_path, db, FilesystemStore(root, b_id), b_id, lease_ttl=3600)
    a.join(DIGEST, len(DATA), source(up_a), keep=True)
    async with asyncio.timeout(WAIT):
        await up_a.held.wait()
    follower = Reader(b.join(DIGEST, len(DATA), source(up_b), keep=True).attach())
    await follower.until(HALF)
    await a.close()  # releases its lease: no waiting for the hour-long expiry
    assert await follower.result() == DATA
    await done(b)
    assert up_b.requests == [0]


async def test_a_failed_leader_fails_its_followers(tmp_path: Path, db: Database) -> None:
    root = tmp_path / "storage"
    a_id, b_id = WorkerId("host-a", 1), WorkerId("host-b", 2)
    up_a, up_b = FakeUpstream(DATA), FakeUpstream(DATA)
    up_a.hold_at, up_a.corrupt = HALF, True
    a = fetcher(tmp_path, db, FilesystemStore(root, a_id), a_id)
    b = fetcher(tmp_path, db, FilesystemStore(root, b_id), b_id)
    a.join(DIGEST, len(DATA), source(up_a), keep=True)
    async with asyncio.timeout(WAIT):
        await up_a.held.wait()
    follower = Reader(b.join(DIGEST, len(DATA), source(up_b), keep=True).attach())
    await follower.until(HALF)
    up_a.release.set()
    with pytest.raises(Exception, match="another server process"):
        await follower.result()
    assert len(follower.received) < len(DATA)
    assert up_b.requests == []  # not a second download of bytes known to be bad
    await done(a)
    await done(b)


def test_growing_refuses_readers_once_closed() -> None:
    growing = Growing(DIGEST, len(DATA))
    growing.close()
    assert growing.attach() is None
    assert growing.phase is Phase.FAILED
