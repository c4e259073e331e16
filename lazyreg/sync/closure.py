"""Manifests of one upstream repository, fetched verified, with their closure.

A manifest is taken from the upstream only as bytes that hash to the digest
claimed: asked by digest, the bytes must hash to it; asked by tag, the
upstream's `Docker-Content-Digest`, if any, must match. A digest this remote
and upstream name served before (`trusted`) is not fetched again: its closure
is already recorded, and was verified the same way.

The closure of a manifest follows index children to any depth, once per
digest, and fails (`ClosureError`) on a cycle, past MAX_DEPTH levels of
nesting, or past `Budget.per_root` manifests; every manifest fetched in a sync
counts against `Budget.total`, which ends the whole sync (`TooManyManifests`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from lazyreg.oci.digest import algorithm, digest_of, is_valid_digest, sha256_digest
from lazyreg.oci.manifest import Descriptor, InvalidManifest, parse_manifest
from lazyreg.oci.platforms import PlatformFilter
from lazyreg.sync.record import FetchedManifest
from lazyreg.upstream.client import UpstreamClient
from lazyreg.upstream.errors import DigestMismatch

MAX_DEPTH = 8  # an index of an index of ... : levels below a tag's manifest
MAX_PER_ROOT = 10_000  # manifests in one tag's closure


class ClosureError(Exception):
    """One manifest's closure cannot be mirrored: a cycle, too deep, too many manifests."""


class TooManyManifests(Exception):
    """A sync fetched more manifests than its budget: systemic, not one tag's fault."""


@dataclass
class Budget:
    total: int
    per_root: int = MAX_PER_ROOT
    fetched: int = 0

    def spend(self) -> None:
        self.fetched += 1
        if self.fetched > self.total:
            raise TooManyManifests(f"the upstream needs more than {self.total} manifests"
                                   " in one sync (10 per tag of the remote's max_tags)")


ALL_PLATFORMS = PlatformFilter()
GetChild = Callable[[str], Awaitable[FetchedManifest | None]]


async def walk_closure(root: FetchedManifest, get_child: GetChild,
                       max_depth: int = MAX_DEPTH, max_count: int = MAX_PER_ROOT,
                       platforms: PlatformFilter = ALL_PLATFORMS,
                       pending: dict[str, Descriptor] | None = None
                       ) -> dict[str, FetchedManifest]:
    """Every manifest fetched below `root`, and `root`, by digest.

    `get_child` gives a child's manifest, or None when its closure is already
    recorded (not walked further). Each digest is asked for once; the children
    of one list are fetched concurrently. Children of platforms outside
    `platforms` are not fetched: their descriptors go into `pending`.
    """
    found: dict[str, FetchedManifest] = {root.digest: root}
    claimed = {root.digest}

    async def visit(m: FetchedManifest, depth: int) -> None:
        new = []
        for child in m.parsed.children:
            digest = child.descriptor.digest
            if digest in claimed:
                continue
            if not platforms.fetches(child):
                if pending is not None:
                    pending.setdefault(digest, child.descriptor)
                continue
            claimed.add(digest)
            new.append(digest)
        if not new:
            return
        if depth + 1 > max_depth:
            raise ClosureError(f"indexes nested more than {max_depth} levels deep")
        if len(claimed) > max_count:
            raise ClosureError(f"more than {max_count} manifests under one tag")
        got = [c for c in await asyncio.gather(*(get_child(d) for d in new)) if c is not None]
        found.update((c.digest, c) for c in got)
        await asyncio.gather(*(visit(c, depth + 1) for c in got))
    await visit(root, 0)
    if pending:
        for digest in found.keys() & pending.keys():
            del pending[digest]  # fetched after all, through another list
    _check_graph(root.digest, found, max_depth)
    return found


def _check_graph(root: str, found: dict[str, FetchedManifest], max_depth: int) -> None:
    """Fail on a cycle, or on a chain of lists longer than `max_depth` below `root`."""
    def children(digest: str) -> list[str]:
        return [c.descriptor.digest for c in found[digest].parsed.children
                if c.descriptor.digest in found]
    height: dict[str, int] = {}
    on_path = {root}
    stack = [(root, iter(children(root)))]
    while stack:
        node, pending = stack[-1]
        nxt = next(pending, None)
        if nxt is None:
            stack.pop()
            on_path.discard(node)
            height[node] = max((height[c] + 1 for c in children(node)),
                               default=1 if found[node].parsed.children else 0)
            if height[node] > max_depth:
                raise ClosureError(f"indexes nested more than {max_depth} levels deep")
        elif nxt in on_path:
            raise ClosureError(f"manifest {nxt} is its own descendant (a cycle)")
        elif nxt not in height:
            on_path.add(nxt)
            stack.append((nxt, iter(children(nxt))))


class ManifestGetter:
    """Fetches and verifies manifests of one upstream repository, once per digest."""

    def __init__(self, client: UpstreamClient, name: str, trusted: set[str],
                 budget: Budget, on_fetched: Callable[[], None] = lambda: None,
                 platforms: PlatformFilter = ALL_PLATFORMS) -> None:
        self.client = client
        self.platforms = platforms
        # Children left to be fetched on demand (the platform filter), by digest.
        self.pending: dict[str, Descriptor] = {}
        self.name = name
        self.trusted = trusted
        self.budget = budget
        self._on_fetched = on_fetched
        self._by_digest: dict[str, asyncio.Future[FetchedManifest]] = {}

    def _parse(self, data: bytes, media_type: str, digest: str,
               reference: str) -> FetchedManifest:
        try:
            parsed = parse_manifest(data, media_type)
        except InvalidManifest as exc:
            raise InvalidManifest(f"manifest {self.name}:{reference} is malformed: {exc}"
                                  ) from None
        self._on_fetched()
        return FetchedManifest(digest, data, parsed)

    async def by_tag(self, tag: str) -> FetchedManifest:
        self.budget.spend()
        body = await self.client.get_manifest(self.name, tag)
        digest = sha256_digest(body.data)
        claimed = body.digest
        if claimed and is_valid_digest(claimed) and \
                digest_of(body.data, algorithm(claimed)) != claimed:
            raise DigestMismatch(f"manifest {self.name}:{tag}: the upstream says {claimed},"
                                 f" its bytes hash to {digest}")
        fetched = self._parse(body.data, body.media_type, digest, tag)
        self._remember(fetched)
        return fetched

    def _remember(self, fetched: FetchedManifest) -> None:
        if fetched.digest not in self._by_digest:
            future = asyncio.get_running_loop().create_future()
            future.set_result(fetched)
            self._by_digest[fetched.digest] = future

    async def by_digest(self, digest: str) -> FetchedManifest:
        """The manifest `digest`, fetched once per sync however many ask."""
        future = self._by_digest.get(digest)
        if future is None:
            future = asyncio.ensure_future(self._fetch_digest(digest))
            self._by_digest[digest] = future
        return await asyncio.shield(future)

    async def _fetch_digest(self, digest: str) -> FetchedManifest:
        self.budget.spend()
        body = await self.client.get_manifest(self.name, digest)
        actual = digest_of(body.data, algorithm(digest))
        if actual != digest:
            raise DigestMismatch(f"manifest {self.name}@{digest}: the upstream sent"
                                 f" {len(body.data)} bytes hashing to {actual}")
        return self._parse(body.data, body.media_type, digest, digest)

    async def child(self, digest: str) -> FetchedManifest | None:
        return None if digest in self.trusted else await self.by_digest(digest)

    async def closure(self, root: FetchedManifest) -> dict[str, FetchedManifest]:
        return await walk_closure(root, self.child, max_count=self.budget.per_root,
                                  platforms=self.platforms, pending=self.pending)

    async def close(self) -> None:
        """Stop fetches still running (a strict sync that gave up) and collect their errors."""
        pending = [f for f in self._by_digest.values() if not f.done()]
        for future in pending:
            future.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for future in self._by_digest.values():
            if not future.cancelled():
                future.exception()  # retrieved: no "never retrieved" noise
