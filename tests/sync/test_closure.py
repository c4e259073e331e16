"""Walking a manifest's closure: any depth, each digest once, cycles and limits refused."""

from __future__ import annotations

import asyncio
import json

import pytest

from lazyreg.oci import mediatypes as mt
from lazyreg.oci.manifest import parse_manifest
from lazyreg.sync.closure import ClosureError, walk_closure
from lazyreg.sync.record import FetchedManifest


def fake(name: str, children: list[str] = ()) -> FetchedManifest:  # type: ignore[assignment]
    """A manifest under a made-up digest: a cycle needs digests that do not hash right."""
    if not children:
        doc = {"mediaType": mt.OCI_MANIFEST, "config": {"digest": _d("c" + name), "size": 1},
               "layers": []}
    else:
        doc = {"mediaType": mt.OCI_INDEX,
               "manifests": [{"digest": _d(c), "size": 1, "mediaType": mt.OCI_INDEX}
                             for c in children]}
    data = json.dumps(doc).encode()
    return FetchedManifest(_d(name), data, parse_manifest(data))


def _d(name: str) -> str:
    return "sha256:" + name.encode().hex().ljust(64, "0")[:64]


class Graph:
    def __init__(self, edges: dict[str, list[str]]) -> None:
        self.manifests = {_d(n): fake(n, c) for n, c in edges.items()}
        self.asked: list[str] = []

    async def get(self, digest: str) -> FetchedManifest | None:
        self.asked.append(digest)
        await asyncio.sleep(0)
        return self.manifests[digest]


async def test_nested_indexes_are_followed_to_the_leaves() -> None:
    g = Graph({"root": ["i1", "i2"], "i1": ["a", "b"], "i2": ["i3"], "i3": ["c"],
               "a": [], "b": [], "c": []})
    found = await walk_closure(g.manifests[_d("root")], g.get)
    assert set(found) == set(g.manifests)


async def test_each_digest_is_fetched_once_in_a_diamond() -> None:
    g = Graph({"root": ["l", "r"], "l": ["x", "y"], "r": ["x", "y"], "x": ["leaf"],
               "y": ["leaf"], "leaf": []})
    found = await walk_closure(g.manifests[_d("root")], g.get)
    assert set(found) == set(g.manifests)
    assert sorted(g.asked) == sorted(set(g.asked))


@pytest.mark.parametrize("edges", [
    {"root": ["a"], "a": ["root"]},
    {"root": ["a", "b"], "a": ["b"], "b": ["a"]},
    {"root": ["a"], "a": ["a"]},
])
async def test_a_cycle_is_an_error_not_a_hang(edges: dict[str, list[str]]) -> None:
    g = Graph(edges)
    with pytest.raises(ClosureError, match="cycle"):
        await asyncio.wait_for(walk_closure(g.manifests[_d("root")], g.get), 5)


async def test_nesting_deeper_than_the_limit_is_refused() -> None:
    chain = {f"n{i}": [f"n{i + 1}"] for i in range(10)} | {"n10": []}
    g = Graph(chain)
    with pytest.raises(ClosureError, match="nested more than 8 levels"):
        await walk_closure(g.manifests[_d("n0")], g.get, max_depth=8)
    g = Graph({f"n{i}": [f"n{i + 1}"] for i in range(8)} | {"n8": []})
    assert len(await walk_closure(g.manifests[_d("n0")], g.get, max_depth=8)) == 9


async def test_too_many_manifests_under_one_root_are_refused() -> None:
    g = Graph({"root": [f"c{i}" for i in range(20)]} | {f"c{i}": [] for i in range(20)})
    with pytest.raises(ClosureError, match="more than 10 manifests"):
        await walk_closure(g.manifests[_d("root")], g.get, max_count=10)
    assert g.asked == []  # refused before fetching


async def test_children_known_already_are_not_walked() -> None:
    g = Graph({"root": ["known", "new"], "known": ["deep"], "new": [], "deep": []})

    async def get(digest: str) -> FetchedManifest | None:
        return None if digest == _d("known") else await g.get(digest)
    found = await walk_closure(g.manifests[_d("root")], get)
    assert set(found) == {_d("root"), _d("new")}
