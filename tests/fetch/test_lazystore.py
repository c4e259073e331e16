"""The lazy store: storage first, then in flight, then a source; keep or relay; errors mapped."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from lazyreg.db.engine import Database
from lazyreg.db.models import Blob, BlobSource, Content, Remote
from lazyreg.errors import RegistryError
from lazyreg.fetch import BlobRef, Fetcher, LazyStore, StoredBody
from lazyreg.fetch.body import BlobBody
from lazyreg.storage.layout import digest_of
from lazyreg.upstream.errors import AuthError, NotFound, TooManyRequests, UpstreamError
from tests.fetch.conftest import services
from tests.fetch.fakes import FakeUpstream
from tests.storage.memory import MemoryStore

DATA = os.urandom(200_000)
DIGEST = digest_of(DATA)


def add_blob(session: Session, remotes: list[tuple[str, str]]) -> BlobRef:
    """The blob with one source per (remote name, policy)."""
    content = Content(kind="blob")
    session.add(content)
    session.flush()
    session.add(Blob(id=content.id, digest=DIGEST, size=len(DATA), media_type="x"))
    for name, policy in remotes:
        remote = Remote(name=name, url="http://upstream.invalid", upstream_name="library/x",
                        policy=policy)
        session.add(remote)
        session.flush()
        session.add(BlobSource(blob_id=content.id, remote_id=remote.id,
                               upstream_name="library/x"))
    return BlobRef(DIGEST, len(DATA), content.id)


class Env:
    def __init__(self, tmp_path: Path, db: Database, cooldown: float = 300) -> None:
        self.store = MemoryStore()
        self.services = services(tmp_path, db, self.store, source_cooldown=cooldown)
        self.upstreams: dict[str, FakeUpstream] = {}
        self.services.upstream_for = self.upstream  # type: ignore[method-assign]
        self.fetcher = Fetcher(self.services)
        self.lazy = LazyStore(self.services, self.fetcher)

    def upstream(self, remote: Remote) -> Any:
        """Each remote's client: a fake upstream of its own."""
        return self.upstreams.setdefault(remote.name, FakeUpstream(DATA))

    async def blob(self, *remotes: tuple[str, str]) -> BlobRef:
        return await self.services.db.write(lambda s: add_blob(s, list(remotes)))

    async def requests(self) -> dict[str, list[int]]:
        return {name: up.requests for name, up in self.upstreams.items()}


async def read(body: BlobBody) -> bytes:
    out = bytearray()
    try:
        async for reader, offset, count in body.spans(0, body.size):
            out += await reader.read(offset, count)
    finally:
        body.close()
    return bytes(out)


async def settled(fetcher: Fetcher) -> None:
    for flight in list(fetcher._flights.values()):
        assert flight.task is not None
        await flight.task


async def test_a_stored_blob_comes_from_storage(tmp_path: Path, db: Database) -> None:
    env = Env(tmp_path, db)
    ref = await env.blob(("a", "on_demand"))
    await env.store.put(DIGEST, DATA)
    body = await env.lazy.open(ref)
    assert isinstance(body, StoredBody)
    assert await read(body) == DATA
    assert await env.lazy.stat(ref) == len(DATA)
    assert await env.requests() == {}


async def test_a_blob_not_stored_is_fetched_once_and_kept(tmp_path: Path, db: Database) -> None:
    env = Env(tmp_path, db)
    ref = await env.blob(("a", "on_demand"))
    assert await env.lazy.stat(ref) == len(DATA)  # the recorded size: nothing fetched
    assert await env.requests() == {}
    bodies = [await env.lazy.open(ref), await env.lazy.open(ref)]
    assert [await read(b) for b in bodies] == [DATA, DATA]
    await settled(env.fetcher)
    assert await env.requests() == {"a": [0]}
    assert await env.store.stat(DIGEST) == len(DATA)
    assert isinstance(await env.lazy.open(ref), StoredBody)


async def test_a_streamed_remote_relays_without_storing(tmp_path: Path, db: Database) -> None:
    env = Env(tmp_path, db)
    ref = await env.blob(("s", "streamed"))
    assert await read(await env.lazy.open(ref)) == DATA
    await settled(env.fetcher)
    assert await env.store.stat(DIGEST) is None
    assert await read(await env.lazy.open(ref)) == DATA  # relayed again
    assert await env.requests() == {"s": [0, 0]}


async def test_no_source_is_blob_unknown(tmp_path: Path, db: Database) -> None:
    env = Env(tmp_path, db)
    ref = await env.blob()
    with pytest.raises(RegistryError) as info:
        await env.lazy.open(ref)
    assert (info.value.code, info.value.status) == ("BLOB_UNKNOWN", 404)


async def test_a_source_that_sent_wrong_bytes_cools_down_and_the_next_one_serves(
        tmp_path: Path, db: Database) -> None:
    env = Env(tmp_path, db, cooldown=3600)
    ref = await env.blob(("bad", "on_demand"))
    env.upstreams["bad"] = bad = FakeUpstream(DATA)
    bad.corrupt = True
    body = await env.lazy.open(ref)
    with pytest.raises(RegistryError) as info:
        await read(body)
    assert (info.value.code, info.value.status) == ("UNAVAILABLE", 502)
    await settled(env.fetcher)

    with pytest.raises(RegistryError) as info:
        await env.lazy.open(ref)
    assert info.value.status == 503 and "cooling down" in info.value.message
    assert "DigestMismatch" in info.value.message
    assert bad.requests == [0]  # skipped, not tried again

    def add_good_source(session: Session) -> None:
        remote = Remote(name="good", url="http://upstream.invalid", upstream_name="library/x")
        session.add(remote)
        session.flush()
        session.add(BlobSource(blob_id=ref.blob_id, remote_id=remote.id,
                               upstream_name="library/x"))
    await db.write(add_good_source)
    assert await read(await env.lazy.open(ref)) == DATA
    assert await env.requests() == {"bad": [0], "good": [0]}


@pytest.mark.parametrize(("error", "code", "status"), [
    (NotFound("gone"), "UNAVAILABLE", 502),
    (TooManyRequests("slow down"), "TOOMANYREQUESTS", 429),
    (AuthError("wrong password"), "UNAVAILABLE", 502),
])
async def test_upstream_failures_are_registry_errors(
        tmp_path: Path, db: Database, error: UpstreamError, code: str, status: int) -> None:
    env = Env(tmp_path, db)
    ref = await env.blob(("a", "on_demand"))
    env.upstreams["a"] = up = FakeUpstream(DATA)
    up.refuse = error
    with pytest.raises(RegistryError) as info:
        await read(await env.lazy.open(ref))
    assert (info.value.code, info.value.status) == (code, status)
    await settled(env.fetcher)
    with pytest.raises(RegistryError) as info:  # a later request: the same, or cooling down
        await read(await env.lazy.open(ref))
    assert info.value.status in (status, 503)
