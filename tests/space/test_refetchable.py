"""Which stored blobs can be deleted to save space: layers with a source that no immediate
repository needs."""

from __future__ import annotations

from sqlalchemy import delete

from lazyreg.db import space
from lazyreg.db.models import Repository
from tests.space.conftest import World, sha256


def refetchable(world: World) -> set[str]:
    with world.db.read_session() as s:
        return {d for d, _ in s.execute(space.refetchable())}


async def test_only_layers_with_a_source_that_no_immediate_repository_holds(world: World
                                                                            ) -> None:
    up = world.remote()
    lazy, keep = world.repository("lazy", "on_demand"), world.repository("keep", "immediate")
    shared, own, sourceless = b"shared layer", b"own layer", b"layer of no remote"
    image = world.image("a", [shared, own], up)
    kept = world.image("b", [shared], up)
    orphaned = world.image("c", [sourceless], None)
    world.version(lazy, image.content_ids | orphaned.content_ids)
    world.version(keep, kept.content_ids)
    for data in (shared, own, sourceless):
        await world.stored(data)
    await world.stored(b'{"image": "a"}', "config")
    # A config fetched lazily is recorded as a layer: still never refetchable.
    await world.stored(b'{"image": "b"}', "layer")
    assert refetchable(world) == {sha256(own)}

    with world.db.read_session() as s:
        totals = space.stored_bytes(s)
    assert (totals.evictable_count, totals.evictable_bytes) == (1, len(own))
    assert totals.kept_count == 4

    # Once no immediate repository holds it, the shared layer may go too.
    with world.db.write_session() as s:
        s.execute(delete(Repository).where(Repository.id == keep))
    assert refetchable(world) == {sha256(own), sha256(shared)}


async def test_an_older_version_of_an_immediate_repository_counts(world: World) -> None:
    up = world.remote()
    keep = world.repository("keep", "immediate")
    first, second = world.image("a", [b"old layer"], up), world.image("b", [b"new layer"], up)
    world.version(keep, first.content_ids)
    world.version(keep, second.content_ids)
    for data in (b"old layer", b"new layer"):
        await world.stored(data)
    assert refetchable(world) == set()
