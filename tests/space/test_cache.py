"""The bounded cache: least recently used refetchable layers go, down to 90% of the bound;
what is in use, busy elsewhere, being downloaded or needed by an immediate repository stays."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import update

from lazyreg.check import check
from lazyreg.db import leases
from lazyreg.db.engine import Database
from lazyreg.db.models import Artifact
from lazyreg.space import SpaceKeeper
from lazyreg.space.cache import EVICT_LEASE
from lazyreg.worker import WorkerId
from tests.space.conftest import World, make_services, sha256

ELSEWHERE = WorkerId("another-host", 7)  # a live process this host cannot see


async def _filled(tmp_path: Path, db: Database, bound: int, n: int = 8
                  ) -> tuple[World, list[str]]:
    world = World(make_services(tmp_path, db, max_cache_bytes=bound))
    up = world.remote()
    repo = world.repository("lazy", "on_demand")
    layers = [bytes([i]) * 200 for i in range(n)]
    world.version(repo, world.image("a", layers, up).content_ids)
    digests = [await world.stored(data) for data in layers]
    with db.write_session() as s:  # layer i was last used at time i
        for i, digest in enumerate(digests):
            s.execute(update(Artifact).where(Artifact.digest == digest).values(last_used=i))
    return world, digests


async def test_least_recently_used_go_down_to_90_percent(tmp_path: Path, db: Database) -> None:
    world, digests = await _filled(tmp_path, db, bound=1000)  # 1600 bytes stored
    keeper = SpaceKeeper(world.services)
    seen: list[tuple[str, int]] = []
    keeper.on_evict.append(lambda digest, size: seen.append((digest, size)))
    with db.write_session() as s:
        s.execute(update(Artifact).where(Artifact.digest == digests[1])
                  .values(busy_until=time.time() + 60))  # sent by another process
        leases.claim(s, leases.blob_lease(digests[2]), ELSEWHERE, 60)  # a download in flight
    with world.services.usage.sending(digests[0]):
        removed = await keeper.evict()
    assert removed is not None and (removed.count, removed.bytes) == (4, 800)
    assert sorted(seen) == sorted((digests[i], 200) for i in (3, 4, 5, 6))
    left = {digests[i] for i in (0, 1, 2, 7)}
    assert world.artifact_digests() == left
    assert await world.file_digests() == left
    assert (await check(db, world.store)).ok
    assert await keeper.evict() is None  # 800 <= 1000: nothing to do
    assert (keeper.stats.blobs, keeper.stats.bytes) == (4, 800)


async def test_nothing_goes_under_the_bound_or_while_another_process_evicts(
        tmp_path: Path, db: Database) -> None:
    world, digests = await _filled(tmp_path, db, bound=1600)
    keeper = SpaceKeeper(world.services)
    assert await keeper.evict() is None
    world.services.settings.max_cache_bytes = 1000
    with db.write_session() as s:
        leases.claim(s, EVICT_LEASE, ELSEWHERE, 60)
    assert await keeper.evict() is None
    assert world.artifact_digests() == set(digests)


async def test_an_immediate_repository_s_layers_are_never_evicted(tmp_path: Path,
                                                                   db: Database) -> None:
    world, _ = await _filled(tmp_path, db, bound=100)
    keep = world.repository("keep", "immediate")
    world.version(keep, world.image("k", [bytes([6]) * 200, bytes([7]) * 200],
                                    world.remote("other")).content_ids)
    removed = await SpaceKeeper(world.services).evict()
    assert removed is not None and removed.count == 6
    assert world.artifact_digests() == {sha256(bytes([6]) * 200), sha256(bytes([7]) * 200)}


async def test_over_the_bound_with_all_in_use_it_waits_for_a_transfer_to_end(
        tmp_path: Path, db: Database) -> None:
    world, digests = await _filled(tmp_path, db, bound=100, n=2)
    keeper = SpaceKeeper(world.services)
    totals = 0
    added_up = keeper.totals

    async def counted() -> object:
        nonlocal totals
        totals += 1
        return await added_up()
    keeper.totals = counted  # type: ignore[method-assign]
    usage = world.services.usage
    with usage.sending(digests[0]), usage.sending(digests[1]):
        stuck = await keeper.evict()
        assert stuck is not None and stuck.count == 0
        assert await keeper.evict() is None and totals == 1  # nothing moved: no new total
    removed = await keeper.evict()  # both transfers ended
    assert removed is not None and removed.count == 2 and totals == 2
    assert await keeper.evict() is None and totals == 2  # under the bound, by the estimate
    # A store pushes the estimate over: the real total is added up (here, nothing is stored).
    keeper.stored("sha256:" + "f" * 64, 300, "layer")
    assert await keeper.evict() is None and totals == 3
