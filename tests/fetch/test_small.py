"""`Fetcher.fetch_small` (`batch.py`, `small.py`): a batch of small blobs, one download each.

Each `Fetcher` stands for one server process, as in `test_fetcher.py`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import select

from lazyreg.db import leases
from lazyreg.db.engine import Database
from lazyreg.db.models import Artifact
from lazyreg.fetch import Fetcher, Source, small
from lazyreg.storage.base import BlobStore
from lazyreg.storage.filesystem import FilesystemStore
from lazyreg.storage.layout import digest_of
from lazyreg.upstream.errors import DigestMismatch, NotFound, Stalled, TooLarge
from lazyreg.worker import WorkerId
from tests.fetch.conftest import fetcher
from tests.fetch.fakes import FakeUpstream
from tests.fetch.test_fetcher import WAIT, Reader, done, lease_state
from tests.storage.conftest import BACKENDS, make_store

T = TypeVar("T")
BLOBS = [os.urandom(1000 + i) for i in range(20)]
SIZES = {digest_of(b): len(b) for b in BLOBS}


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(small, "RETRY_BACKOFF", 0.0)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return make_store(request.param, tmp_path / "storage")


def sources(up: FakeUpstream) -> list[Source]:
    return [Source(up, "library/x")]


async def stored_kinds(db: Database) -> dict[str, str]:
    return dict(await db.read(lambda s: s.execute(select(Artifact.digest, Artifact.kind)).all()))


def count_writes(db: Database, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    write = db.write

    def counting(fn: Callable[[Any], T]) -> Awaitable[T]:
        calls[0] += 1
        return write(fn)
    monkeypatch.setattr(db, "write", counting)
    return calls


async def within(aw: Awaitable[T]) -> T:
    async with asyncio.timeout(WAIT):
        return await aw


async def test_a_batch_is_stored_and_recorded_in_two_transactions(
        tmp_path: Path, db: Database, store: BlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    up = FakeUpstream(*BLOBS)
    f = fetcher(tmp_path, db, store)
    writes = count_writes(db, monkeypatch)
    errors = await within(f.fetch_small(SIZES, sources(up), kind="config"))
    assert errors == dict.fromkeys(SIZES)
    assert writes == [2]  # claim every lease; record every artifact and finish every lease
    assert await stored_kinds(db) == dict.fromkeys(SIZES, "config")
    for blob in BLOBS:
        reader = await store.open(digest_of(blob))
        assert reader is not None and await reader.read(0, len(blob)) == blob
        reader.close()
    assert len(up.requests) == len(BLOBS)
    assert {await lease_state(db, d) for d in SIZES} == {leases.LeaseState.DONE}
    assert not f._flights


async def test_what_is_stored_already_is_not_fetched_again(
        tmp_path: Path, db: Database, store: BlobStore) -> None:
    up = FakeUpstream(*BLOBS)
    f = fetcher(tmp_path, db, store)
    first = dict(list(SIZES.items())[:5])
    assert await within(f.fetch_small(first, sources(up), kind="config")) == dict.fromkeys(first)
    assert await within(f.fetch_small(SIZES, sources(up), kind="config")) == dict.fromkeys(SIZES)
    assert len(up.requests) == len(BLOBS)


async def test_wrong_or_too_many_bytes_fail_their_blob_only(
        tmp_path: Path, db: Database, store: BlobStore) -> None:
    good, wrong, endless = BLOBS[:3]
    up = FakeUpstream(good)
    up.blobs[digest_of(wrong)] = bytes(len(wrong))  # the right size, the wrong bytes
    up.blobs[digest_of(endless)] = endless + os.urandom(10 * len(endless))
    f = fetcher(tmp_path, db, store)
    wanted = {digest_of(b): len(b) for b in (good, wrong, endless)}
    errors = await within(f.fetch_small(wanted, sources(up), kind="config"))
    assert errors[digest_of(good)] is None
    assert isinstance(errors[digest_of(wrong)], DigestMismatch)
    assert isinstance(errors[digest_of(endless)], TooLarge)
    assert f"more than the limit of {len(endless)} bytes" in str(errors[digest_of(endless)])
    assert await stored_kinds(db) == {digest_of(good): "config"}
    assert await store.stat(digest_of(wrong)) is None
    assert await lease_state(db, digest_of(wrong)) is leases.LeaseState.FAILED


async def test_a_failed_source_is_replaced_by_the_next(tmp_path: Path, db: Database) -> None:
    refusing, good = FakeUpstream(*BLOBS), FakeUpstream(*BLOBS)
    refusing.refuse = NotFound("not here")
    f = fetcher(tmp_path, db, FilesystemStore(tmp_path / "storage"))
    errors = await within(f.fetch_small(SIZES, [Source(refusing, "a"), Source(good, "b")],
                                        kind="config"))
    assert errors == dict.fromkeys(SIZES)
    assert len(good.requests) == len(BLOBS)


async def test_a_cut_body_is_read_again(tmp_path: Path, db: Database) -> None:
    blob = BLOBS[0]
    up = FakeUpstream(blob, chunk=100)
    up.cut_at = 500
    f = fetcher(tmp_path, db, FilesystemStore(tmp_path / "storage"))
    assert await within(f.fetch_small({digest_of(blob): len(blob)}, sources(up),
                                      kind="config")) == {digest_of(blob): None}
    assert up.requests == [0, 0]


async def test_a_body_that_takes_too_long_in_all_is_stalled(tmp_path: Path,
                                                            db: Database) -> None:
    blob = BLOBS[0]
    up = FakeUpstream(blob, chunk=100)
    up.hold_at = 500  # held until the limit: never released
    f = fetcher(tmp_path, db, FilesystemStore(tmp_path / "storage"), upstream_read_timeout=0.2)
    errors = await within(f.fetch_small({digest_of(blob): len(blob)}, sources(up),
                                        kind="config"))
    assert isinstance(errors[digest_of(blob)], Stalled)
    assert "not received in 0.2s" in str(errors[digest_of(blob)])


async def test_a_reader_joins_a_blob_of_the_batch_and_gets_it_with_one_request(
        tmp_path: Path, db: Database, store: BlobStore) -> None:
    blob = BLOBS[0]
    digest = digest_of(blob)
    up = FakeUpstream(blob, chunk=100)
    up.hold_at = 500
    f = fetcher(tmp_path, db, store)
    batch = asyncio.create_task(f.fetch_small({digest: len(blob)}, sources(up), kind="config"))
    await within(up.held.wait())
    growing = f.in_flight(digest)  # what the lazy store finds for a /v2 client
    assert growing is not None
    assert f.join(digest, len(blob), sources(FakeUpstream(blob)), keep=True) is growing
    reader = Reader(growing.attach())
    up.release.set()
    assert await reader.result() == blob
    assert await within(batch) == {digest: None}
    assert up.requests == [0]


async def test_a_blob_in_flight_here_is_joined_not_fetched_again(
        tmp_path: Path, db: Database, store: BlobStore) -> None:
    blob = BLOBS[0]
    digest = digest_of(blob)
    first, second = FakeUpstream(blob, chunk=100), FakeUpstream(*BLOBS)
    first.hold_at = 500
    f = fetcher(tmp_path, db, store)
    f.join(digest, len(blob), sources(first), keep=True)  # a /v2 client's lazy fetch
    await within(first.held.wait())
    batch = asyncio.create_task(f.fetch_small(SIZES, sources(second), kind="config"))
    await asyncio.sleep(0)
    first.release.set()
    assert await within(batch) == dict.fromkeys(SIZES)
    assert first.requests == [0]
    assert len(second.requests) == len(BLOBS) - 1


async def test_a_blob_another_process_downloads_is_followed(
        tmp_path: Path, db: Database) -> None:
    root = tmp_path / "storage"
    a_id, b_id = WorkerId("host-a", 1), WorkerId("host-b", 2)  # live: another host's
    blob = BLOBS[0]
    digest = digest_of(blob)
    up_a, up_b = FakeUpstream(blob, chunk=100), FakeUpstream(*BLOBS)
    up_a.hold_at = 500
    a = fetcher(tmp_path, db, FilesystemStore(root, a_id), a_id)
    b = fetcher(tmp_path, db, FilesystemStore(root, b_id), b_id)
    a.join(digest, len(blob), sources(up_a), keep=True)
    await within(up_a.held.wait())
    batch = asyncio.create_task(b.fetch_small(SIZES, sources(up_b), kind="config"))
    async with asyncio.timeout(WAIT):
        while len(up_b.requests) < len(BLOBS) - 1:  # the others, while `digest` is held
            await asyncio.sleep(0.01)
    assert not batch.done()
    up_a.release.set()
    assert await within(batch) == dict.fromkeys(SIZES)
    assert up_a.requests == [0] and len(up_b.requests) == len(BLOBS) - 1
    await done(a, digest)


async def test_the_lease_of_a_dead_process_is_taken_over(tmp_path: Path, db: Database) -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    dead = WorkerId(WorkerId.current().host, proc.pid)
    digest = next(iter(SIZES))
    await db.write(lambda s: leases.claim(s, f"blob:{digest}", dead, 3600))
    up = FakeUpstream(*BLOBS)
    f = fetcher(tmp_path, db, FilesystemStore(tmp_path / "storage"))
    assert await within(f.fetch_small(SIZES, sources(up), kind="config")) == dict.fromkeys(SIZES)
    view = await db.read(lambda s: leases.get(s, f"blob:{digest}"))
    assert view is not None and view.owner == WorkerId.current()


async def test_shutdown_gives_the_leases_up_for_another_process(
        tmp_path: Path, db: Database) -> None:
    blob = BLOBS[0]
    digest = digest_of(blob)
    up = FakeUpstream(blob, chunk=100)
    up.hold_at = 500
    f: Fetcher = fetcher(tmp_path, db, FilesystemStore(tmp_path / "storage"))
    batch = asyncio.create_task(f.fetch_small({digest: len(blob)}, sources(up), kind="config"))
    await within(up.held.wait())
    await within(f.close())
    errors = await within(batch)
    assert errors[digest] is not None
    assert await lease_state(db, digest) is None  # released, not failed: free at once
    assert await stored_kinds(db) == {}
