"""13. Fleet: 12 concurrent cold pulls over a three-node lazyreg cluster and three proxies.

Each repetition starts, fresh, three lazyreg servers on one new PostgreSQL
database and one data directory (each a cluster node: its internal listener,
one shared secret), with a pull-through distribution `hub` of the upstream made
through node 0; and three distribution pull-through caches of the same
upstream (empty storage). Then 12 clients, 4 on each node (or on each proxy)
at once, pull `fixtures/small:v1` and `fixtures/big:latest`: the manifest by
tag, then its config and layers, every body's digest checked. The upstream's
access log counts the blob GETs that reach it during the fleet pull.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import aiohttp

from bench.clients import MANIFEST_ACCEPT, TIMEOUT, BenchError
from bench.report import LAZYREG, Goal, Row, Section
from bench.scenarios import Context
from bench.servers import blob_gets, log, requests_since, settle
from tests.postgres import PostgresServer, start_postgres
from tests.rig import Lazyreg, Upstream, start_lazyreg

CLUSTER = "lazyreg cluster"
PROXIES = "distribution proxies"
NODES = 3
PER_NODE = 4
IMAGES = (("fixtures/small", "v1"), ("fixtures/big", "latest"))
SECRET = "a-cluster-secret-for-the-benchmark"


# ---------------------------------------------------------------- the clients

async def _blob(session: aiohttp.ClientSession, url: str, digest: str, size: int) -> None:
    sha, nbytes = hashlib.sha256(), 0
    async with session.get(url) as resp:
        if resp.status != 200:
            raise BenchError(f"GET {url} -> {resp.status}: {(await resp.read())[:300]!r}")
        async for chunk in resp.content.iter_any():
            nbytes += len(chunk)
            sha.update(chunk)
    if nbytes != size or "sha256:" + sha.hexdigest() != digest:
        raise BenchError(f"GET {url}: {nbytes} bytes, not {size} bytes with {digest}")


async def _image(session: aiohttp.ClientSession, base: str, repo: str, tag: str,
                 expect: dict[str, int]) -> None:
    url = f"{base}/v2/{repo}/manifests/{tag}"
    async with session.get(url, headers={"Accept": MANIFEST_ACCEPT}) as resp:
        body = await resp.read()
        if resp.status != 200:
            raise BenchError(f"GET {url} -> {resp.status}: {body[:300]!r}")
    manifest = json.loads(body)
    blobs = {d["digest"]: int(d["size"]) for d in [manifest["config"], *manifest["layers"]]}
    if blobs != expect:
        raise BenchError(f"GET {url}: blobs {sorted(blobs)}, expected {sorted(expect)}")
    await asyncio.gather(*(_blob(session, f"{base}/v2/{repo}/blobs/{d}", d, n)
                           for d, n in blobs.items()))


async def _client(base: str, prefix: str, images: dict[tuple[str, str], dict[str, int]]
                  ) -> None:
    """One client: both images at once, each manifest first, then its blobs at once."""
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT,
                                     auto_decompress=False) as session:
        await asyncio.gather(*(_image(session, base, prefix + repo, tag, blobs)
                               for (repo, tag), blobs in images.items()))


def fleet_pull(bases: list[str], prefix: str,
               images: dict[tuple[str, str], dict[str, int]]) -> float:
    """Seconds for PER_NODE clients on each of `bases` to pull every image, all at once."""
    async def everyone() -> float:
        t0 = time.perf_counter()
        await asyncio.gather(*(_client(base, prefix, images)
                               for base in bases for _ in range(PER_NODE)))
        return time.perf_counter() - t0
    return asyncio.run(everyone())


# ---------------------------------------------------------------- the servers

def _answer(url: str) -> tuple[int, str]:
    async def get() -> tuple[int, str]:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session, \
                session.get(url, headers={"Accept": MANIFEST_ACCEPT}) as resp:
            body = await resp.read()
            try:
                code = json.loads(body)["errors"][0]["code"]
            except (ValueError, KeyError, IndexError, TypeError):
                code = ""
            return resp.status, code
    return asyncio.run(get())


def _until_serves(server: Lazyreg, timeout: float = 30.0) -> None:
    """Wait until `server` knows the distribution `hub` (made through another node): a tag
    that does not exist answers MANIFEST_UNKNOWN there, not NAME_UNKNOWN. (Not a tag of
    the images: that would warm the pull.)"""
    deadline = time.monotonic() + timeout
    while _answer(f"{server.url}/v2/hub/fixtures/small/manifests/not-a-tag") \
            != (404, "MANIFEST_UNKNOWN"):
        if time.monotonic() > deadline:
            raise BenchError(f"{server.url} does not serve the distribution hub")
        time.sleep(0.1)


def _node(data: Path, database_url: str) -> Lazyreg:
    return start_lazyreg(data, database_url=database_url, env={
        "LAZYREG_CLUSTER_SECRET": SECRET, "LAZYREG_CLUSTER_LISTEN": "127.0.0.1:0"})


@contextmanager
def cluster(ctx: Context, pg: PostgresServer, up: Upstream) -> Iterator[list[Lazyreg]]:
    """Three fresh nodes on a fresh database and one data directory, `hub` on all."""
    workdir = ctx.servers.scratch("fleet-cluster")
    database_url = pg.create_database()
    nodes: list[Lazyreg] = []
    try:
        nodes.append(_node(workdir / "data", database_url))  # migrates the database
        with ThreadPoolExecutor(NODES - 1) as pool:
            rest = [pool.submit(_node, workdir / "data", database_url)
                    for _ in range(NODES - 1)]
        for future in rest:
            if future.exception() is None:
                nodes.append(future.result())
        for future in rest:
            if future.exception() is not None:
                raise future.exception()  # type: ignore[misc]
        nodes[0].ok("POST", "remotes/", {"name": "upstream", "url": up.url})
        nodes[0].ok("POST", "distributions/", {"name": "hub", "base_path": "hub",
                                               "remote": "upstream", "pull_through": True})
        for node in nodes:
            _until_serves(node)
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def proxies(ctx: Context, up: Upstream) -> Iterator[list[Upstream]]:
    with ExitStack() as stack:
        yield [stack.enter_context(ctx.servers.proxy(up)) for _ in range(NODES)]


def _proxy_stored(proxy: Upstream, digest: str) -> bool:
    hexdigest = digest.split(":", 1)[1]
    return any(proxy.dir.glob(f"**/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data"))


# ---------------------------------------------------------------- the scenario

def _skipped(section: Section, why: str) -> Section:
    log(f"fleet: skipped: {why}")
    section.notes.append(f"**Skipped**: {why}.")
    return section


def run(ctx: Context) -> Section:
    section = Section("fleet", "13. Fleet: 12 concurrent cold pulls, three nodes",
                      [CLUSTER, PROXIES], [(CLUSTER, PROXIES)],
                      missing="n/a (no PostgreSQL)")
    try:
        pg = start_postgres()
    except Exception as exc:  # a PostgreSQL that is installed but will not start
        return _skipped(section, f"PostgreSQL did not start ({type(exc).__name__}: {exc})")
    if pg is None:
        return _skipped(section, "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin);"
                        " `make test` installs them")
    try:
        _measure(ctx, section, pg)
    finally:
        pg.stop()
    return section


def _measure(ctx: Context, section: Section, pg: PostgresServer) -> None:
    up = ctx.servers.upstream()
    images = {(repo, tag): {d: int(n) for d, n in up.tag(repo, tag)["blobs"].items()}
              for repo, tag in IMAGES}
    unique = sorted({d for blobs in images.values() for d in blobs})
    per_blob: dict[str, list[float]] = {CLUSTER: [], PROXIES: []}
    worst: dict[str, list[float]] = {CLUSTER: [], PROXIES: []}
    manifests: dict[str, list[float]] = {CLUSTER: [], PROXIES: []}
    wall: dict[str, list[float]] = {CLUSTER: [], PROXIES: []}

    def measure(column: str, bases: list[str], prefix: str,
                done: Callable[[], bool]) -> None:
        mark = settle(up, quiet=0.2)
        took = fleet_pull(bases, prefix, images)
        # lazyreg commits a blob after its last byte; the proxies store each blob with a
        # GET of their own in the background: wait for both, then for a quiet log.
        end = settle(up, quiet=0.5, until=done)
        counts = [blob_gets(up, d, mark) for d in unique]
        wall[column].append(took)
        per_blob[column].append(sum(counts) / len(unique))
        worst[column].append(max(counts))
        seen = requests_since(up, mark)
        manifests[column].append(sum(1 for method, path, _ in seen
                                     if method == "GET" and "/manifests/" in path))
        failed = sum(1 for method, path, status in seen
                     if method == "GET" and "/blobs/" in path and status != 200)
        log(f"fleet {column}: {took:.1f} s, upstream blob GETs {counts}"
            f" ({sum(counts) / len(unique):.2f} per unique blob, {failed} not 200);"
            f" log {mark}..{end}")

    for rep in range(ctx.reps):
        for column in ctx.rotated([CLUSTER, PROXIES], rep):
            if column == CLUSTER:
                with cluster(ctx, pg, up) as nodes:
                    measure(column, [n.url for n in nodes], "hub/",
                            lambda n=nodes[0]: set(unique) <= n.artifact_digests())
            else:
                with proxies(ctx, up) as pxs:
                    measure(column, [p.url for p in pxs], "",
                            lambda p=pxs: all(_proxy_stored(x, d) for x in p for d in unique))
        log(f"fleet rep {rep + 1}/{ctx.reps} done")

    clients = NODES * PER_NODE
    section.rows += [
        # A value goal reads the LAZYREG samples (not a column here): the same ones.
        Row("upstream blob GETs per unique blob", "GETs/blob",
            {**per_blob, LAZYREG: per_blob[CLUSTER]}, "lower", Goal("value", "<=", 1.0)),
        Row("upstream GETs of the most fetched blob", "GETs", worst, "lower", plot=False),
        Row("upstream manifest GETs", "GETs", manifests, "lower", plot=False),
        Row(f"wall time of the fleet pull ({clients} clients)", "s", wall, "lower",
            plot=False),
    ]
    big = sum(images["fixtures/big", "latest"].values()) >> 20
    section.notes += [
        f"{clients} clients at once, {PER_NODE} on each of the {NODES} lazyreg nodes or"
        f" {NODES} distribution proxies, each pulling `fixtures/small:v1`"
        f" ({len(images['fixtures/small', 'v1'])} blobs) and `fixtures/big:latest`"
        f" ({big} MiB) at once: the manifest by tag, then config and layers at once, every"
        f" body's sha256 and size checked (aiohttp, one process). {len(unique)} unique blobs.",
        "lazyreg: three `lazyreg serve` processes on one PostgreSQL database and one data"
        " directory, each a cluster node (LAZYREG_CLUSTER_SECRET, an internal listener); a"
        " remote with only the upstream's url and a pull-through distribution `hub`, made"
        " through node 0 and awaited on nodes 1 and 2 (with a tag that does not exist, so"
        " nothing is warmed). Fresh nodes, database and directory every repetition.",
        "distribution: three pull-through caches (`proxy.remoteurl`), empty storage every"
        " repetition. A proxy does not join a download in flight: each client's GET of a"
        " missing blob goes upstream, and the proxy fetches the blob again to store it;"
        " each client's manifest GET by tag also asks the upstream.",
        "Upstream blob GETs are counted in the upstream's access log, from before the fleet"
        " pull until lazyreg has stored every blob (or every proxy has) and the log is"
        " quiet. Wall time: first request to last body verified.",
    ]
