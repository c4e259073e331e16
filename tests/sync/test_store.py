"""What a sync stores: configs batched across tags (`Configs`), manifests as they come."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from sqlalchemy import select

from lazyreg.db.models import Artifact
from lazyreg.db.usage import UsageLog
from lazyreg.fetch import Fetcher, Source
from lazyreg.sync import store
from lazyreg.sync.store import Configs, configs_of, store_manifests
from lazyreg.upstream.client import CONFIG_LIMIT
from lazyreg.upstream.errors import NotFound
from tests.fetch.conftest import services
from tests.hostile import OCI_CONFIG, OCI_MANIFEST
from tests.sqlite import fresh_database, migrated_template
from tests.storage.memory import MemoryStore
from tests.sync.test_record import fetched, image

WAIT = 10.0


class FakeFetcher:
    """Records each batch; every batch waits for `go`; `errors` fail their digests."""

    def __init__(self) -> None:
        self.batches: list[set[str]] = []
        self.go = asyncio.Event()
        self.errors: dict[str, BaseException] = {}
        self.services = SimpleNamespace(usage=UsageLog())  # what `Configs` marks used

    async def fetch_small(self, blobs: Mapping[str, int], sources: list[Source], *,
                          kind: str) -> dict[str, BaseException | None]:
        assert kind == "config"
        self.batches.append(set(blobs))
        await self.go.wait()
        return {d: self.errors.get(d) for d in blobs}


def configs(fake: FakeFetcher, **kw: Any) -> Configs:
    return Configs(cast(Fetcher, fake), Source(cast(Any, None), "app"), **kw)


async def test_what_tags_ask_for_meanwhile_goes_in_the_next_batch() -> None:
    fake = FakeFetcher()
    counted = {"new": 0, "stored": 0}
    c = configs(fake, on_new=lambda: counted.__setitem__("new", counted["new"] + 1),
                on_stored=lambda: counted.__setitem__("stored", counted["stored"] + 1))
    images = [image(i) for i in range(10)]
    tags = [asyncio.create_task(c.store([m])) for m in images]
    tags.append(asyncio.create_task(c.store(images[:3])))  # configs asked for already
    async with asyncio.timeout(WAIT):
        while counted["new"] < 10:  # until every tag has asked
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert len(fake.batches) == store.BATCHES  # the rest wait for a free batch
        fake.go.set()
        await asyncio.gather(*tags)
    assert [len(b) for b in fake.batches] == [1, 1, 8]
    assert set().union(*fake.batches) == set(configs_of(images))
    assert counted == {"new": 10, "stored": 10}
    assert c.fetched == set(configs_of(images))
    # Each is marked used: one stored before is reused, and orphan cleanup must keep it.
    assert all(fake.services.usage.is_recent(d) for d in configs_of(images))
    await c.close()


async def test_a_failed_config_fails_the_tags_that_need_it_only() -> None:
    fake = FakeFetcher()
    fake.go.set()
    good, bad = image(1), image(2)
    assert bad.parsed.config is not None
    fake.errors[bad.parsed.config.digest] = NotFound("config not found upstream")
    c = configs(fake)
    await c.store([good])
    with pytest.raises(NotFound):
        await c.store([good, bad])
    with pytest.raises(NotFound):  # the first outcome is kept: not fetched again
        await c.store([bad])
    assert len(fake.batches) == 2
    assert c.fetched == set(configs_of([good]))
    await c.close()


def test_configs_over_the_limit_are_left_for_later() -> None:
    big = fetched({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
                   "config": {"mediaType": OCI_CONFIG, "digest": "sha256:" + "a" * 64,
                              "size": CONFIG_LIMIT + 1}})
    assert configs_of([big, image(2)]) == configs_of([image(2)])


async def test_closing_stops_batches_and_fails_what_waits() -> None:
    fake = FakeFetcher()
    c = configs(fake)
    tag = asyncio.create_task(c.store([image(1)]))
    async with asyncio.timeout(WAIT):
        while not fake.batches:
            await asyncio.sleep(0)
    await c.close()
    with pytest.raises(asyncio.CancelledError):
        await tag


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrated_template(tmp_path_factory.mktemp("template"))


async def test_manifests_are_stored_and_recorded_even_when_one_put_fails(
        template: Path, tmp_path: Path) -> None:
    db = fresh_database(template, tmp_path)
    memory = MemoryStore()
    ok, broken = image(1), image(2)
    put = memory.put

    async def failing_put(digest: str, data: bytes) -> str:
        if digest == broken.digest:
            raise OSError(28, "No space left on device")
        return await put(digest, data)
    memory.put = failing_put  # type: ignore[method-assign]
    try:
        with pytest.raises(OSError, match="No space"):
            await store_manifests(services(tmp_path, db, memory), [ok, broken])
        assert set(memory.blobs) == {ok.digest}
        kinds = await db.read(lambda s: dict(s.execute(
            select(Artifact.digest, Artifact.kind)).all()))
        assert kinds == {ok.digest: "manifest"}
        again = services(tmp_path, db, MemoryStore())
        await store_manifests(again, [ok])  # again: one row
        assert await db.read(lambda s: s.query(Artifact).count()) == 1
        # ... whose `last_used` the row keeps: the reuse is noted for the next flush,
        # so that orphan cleanup does not take it before the version is written.
        assert again.usage.is_recent(ok.digest)
    finally:
        db.dispose()
