"""A cluster: three `lazyreg serve` processes on one PostgreSQL, one download per blob.

Each server is a cluster node (its own internal listener, one shared secret).
They share the data directory, as servers of one machine can: a follower would
read its leader's staging there, but a follower of another server reads the
leader's internal endpoint (the path it takes when storage cannot share
staging), which is what these tests prove. The last test runs three servers
on one bucket of the S3 rig instead, each with its own data directory.
Upstream requests are counted in the rig registry's access log; bodies are
throttled by the rig's fault proxy.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lazyreg.clusterauth import HEADER, sign
from tests.e2e.test_faults import big_layer, blob_gets, via
from tests.e2e.test_pullthrough import MANIFESTS, _concurrently, manifest, pull_through
from tests.postgres import PostgresServer
from tests.rig import (
    FaultProxy,
    Lazyreg,
    Upstream,
    dir_blobs,
    http_json,
    podman_pull,
    skopeo_copy,
    start_lazyreg,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

SECRET = "a-cluster-secret-for-tests"


def sha256_file(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
LEASE_TTL = 5.0


@dataclass
class Node:
    server: Lazyreg
    internal: str  # its cluster_url


def on_another_host(hostname: str) -> list[str]:
    """A prefix running the server under another host name (a UTS namespace of its own):
    the other servers cannot see whether its process lives, as with a server of another
    machine, and only its lease's expiry tells them it is gone."""
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    return ["unshare", *user, "--uts", "--", "sh", "-c",
            f'hostname {hostname} && exec "$0" "$@"']


def cluster_url_of(server: Lazyreg) -> str:
    """The internal endpoint's URL, as the server says at start-up (its port was 0)."""
    found = re.search(r"peers read this server's downloads at (\S+)",
                      server.logfile.read_text())
    assert found, "the server did not say where its internal endpoint is"
    return found.group(1)


def start_node(data: Path, database_url: str, prefix: list[str] | None = None,
               env: dict[str, str] | None = None) -> Node:
    # Port 0: a port picked here could be taken by another server starting meanwhile.
    server = start_lazyreg(data, database_url=database_url, prefix=prefix, env={
        "LAZYREG_CLUSTER_SECRET": SECRET, "LAZYREG_CLUSTER_LISTEN": "127.0.0.1:0",
        "LAZYREG_LEASE_TTL": str(LEASE_TTL), **(env or {})})
    return Node(server, cluster_url_of(server))


def start_nodes(data: Path, database_url: str, prefix: list[str] | None = None
                ) -> list[Node]:
    """Three nodes: the first (run with `prefix`) migrates the database, the other two
    start together."""
    first = start_node(data, database_url, prefix)
    with ThreadPoolExecutor(2) as pool:
        rest = [pool.submit(start_node, data, database_url) for _ in range(2)]
    started = [first] + [f.result() for f in rest if f.exception() is None]
    if len(started) < 3:
        for node in started:
            node.server.stop()
        raise next(f.exception() for f in rest if f.exception() is not None)  # type: ignore[misc]
    return started


@dataclass
class Cluster:
    nodes: list[Node]
    faults: FaultProxy
    upstream: Upstream


@pytest.fixture(scope="module")
def cluster(postgres: PostgresServer, upstream: Upstream,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("cluster")
    faults = FaultProxy(upstream.url, tmp / "faults.log")
    database_url = postgres.create_database()
    nodes: list[Node] = []
    try:
        nodes = start_nodes(tmp / "data", database_url)
        nodes[0].server.setup_mirror(via(faults.url, upstream), "mirror", "fixtures/big")
        yield Cluster(nodes, faults, upstream)
    finally:
        for node in nodes:
            node.server.stop()
        faults.stop()


@dataclass
class Pulled:
    node: int
    digest: str
    first: float  # monotonic time of the first byte
    last: float


async def _pull(session: aiohttp.ClientSession, url: str, node: int,
                first_byte: asyncio.Event | None = None) -> Pulled:
    h = hashlib.sha256()
    first = 0.0
    async with session.get(url) as resp:
        assert resp.status == 200, resp.status
        async for chunk in resp.content.iter_chunked(1 << 20):
            if not first:
                first = time.monotonic()
                if first_byte is not None:
                    first_byte.set()
            h.update(chunk)
    return Pulled(node, "sha256:" + h.hexdigest(), first, time.monotonic())


async def _thirty_clients(urls: list[str]) -> list[Pulled]:
    """One client on node 0 first (so that node 0 leads), then 29 spread over the three."""
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=timeout) as session:
        leading = asyncio.Event()
        first = asyncio.create_task(_pull(session, urls[0], 0, leading))
        await asyncio.wait_for(leading.wait(), 60)
        rest = asyncio.gather(*(_pull(session, urls[i % 3], i % 3) for i in range(1, 30)))
        return [await first, *await rest]


def test_three_servers_thirty_clients_one_upstream_download(cluster: Cluster) -> None:
    nodes, upstream = cluster.nodes, cluster.upstream
    cluster.faults.configure(rate_kib=16 * 1024, reset=True)  # 64 MiB in about 4 s
    digest, size = big_layer(upstream)
    mark = upstream.mark()
    urls = [f"{n.server.url}/v2/mirror/blobs/{digest}" for n in nodes]
    started = time.monotonic()
    pulled = asyncio.run(_thirty_clients(urls))
    assert [p.digest for p in pulled] == [digest] * 30
    assert blob_gets(upstream, digest, mark) == [200]
    # No client's last byte comes before the download's end: the first of them bounds it.
    ended = min(p.last for p in pulled)
    others = [p for p in pulled if p.node != 0]
    assert len(others) == 20
    assert max(p.first for p in others) < ended, (
        f"a client of a following node waited for the whole blob:"
        f" first bytes by {max(p.first for p in others) - started:.2f}s,"
        f" download ended by {ended - started:.2f}s")
    # The followers read the leader's internal endpoint, not its staging.
    for node in nodes[1:]:
        assert f"at {nodes[0].internal}" in node.server.logfile.read_text()
    rows = [a for a in nodes[1].server.artifacts()["results"] if a["digest"] == digest]
    assert [r["size"] for r in rows] == [size]
    print(f"\n30 clients on 3 servers x 64 MiB: {time.monotonic() - started:.2f}s;"
          f" upstream GETs 1; last first byte on a follower at"
          f" {max(p.first for p in others) - started:.2f}s, download ended by"
          f" {ended - started:.2f}s")


def _internal_get(node: Node, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    async def get() -> tuple[int, bytes]:
        async with aiohttp.ClientSession() as session, \
                session.get(node.internal + path, headers=headers) as resp:
            return resp.status, await resp.read()
    return asyncio.run(get())


def test_internal_endpoint_answers_only_peers_and_only_what_it_has(cluster: Cluster) -> None:
    node, upstream = cluster.nodes[2], cluster.upstream
    stored = next(a["digest"] for a in node.server.artifacts()["results"]
                  if a["kind"] == "config")  # the sync stored it
    path = f"/_cluster/blobs/{stored}"
    unknown = "sha256:" + "0" * 64
    mark = upstream.mark()
    # No secret, a wrong one, another path's signature: 401, whether stored or not.
    assert _internal_get(node, path, {})[0] == 401
    assert _internal_get(node, path, {HEADER: sign("not-the-secret-at-all", "GET", path)}
                         )[0] == 401
    other = f"/_cluster/blobs/{unknown}"
    assert _internal_get(node, path, {HEADER: sign(SECRET, "GET", other)})[0] == 401
    assert _internal_get(node, path, {HEADER: "1:" + "0" * 64})[0] == 401
    # With the secret: a digest neither stored nor downloading is 404, and nothing upstream.
    assert _internal_get(node, other, {HEADER: sign(SECRET, "GET", other)})[0] == 404
    progress = other + "/progress"
    assert _internal_get(node, progress, {HEADER: sign(SECRET, "GET", progress)})[0] == 404
    # A stored blob, by range.
    status, body = _internal_get(node, path, {HEADER: sign(SECRET, "GET", path),
                                              "Range": "bytes=0-9"})
    assert status == 206 and len(body) == 10
    assert upstream.requests(mark) == []
    # The public port has no such route.
    status, _ = http_json("GET", node.server.url + path)
    assert status == 404


def test_pull_through_burst_over_three_servers_one_manifest_get(cluster: Cluster) -> None:
    nodes, upstream = cluster.nodes, cluster.upstream
    pull_through(nodes[0].server, cluster.faults.url, base_path="hub3", name="hub3")
    cluster.faults.configure(match=MANIFESTS, delay_ms=500, reset=True)
    entry = upstream.tag("fixtures/oci", "1.0")
    mark = upstream.mark()
    answers = _concurrently(lambda n: manifest(n.server, "hub3/fixtures/oci/manifests/1.0"),
                            nodes * 10)
    assert [a.status for a in answers] == [200] * 30
    assert {a.headers["Docker-Content-Digest"] for a in answers} == {entry["digest"]}
    assert upstream.count("GET", r"^/v2/fixtures/oci/manifests/1\.0$", mark) == 1
    # A burst of requests for a tag the upstream does not have: one GET too.
    mark = upstream.mark()
    answers = _concurrently(lambda n: manifest(n.server, "hub3/fixtures/oci/manifests/nope"),
                            nodes * 10)
    assert [a.status for a in answers] == [404] * 30
    assert upstream.count("GET", r"^/v2/fixtures/oci/manifests/nope$", mark) == 1


def _until_served(server: Lazyreg, path: str, timeout: float = 10.0) -> None:
    """Wait until `server` answers the manifest at `path` (a distribution made through
    another node reaches this one through the change feed)."""
    deadline = time.monotonic() + timeout
    while manifest(server, path).status != 200:
        assert time.monotonic() < deadline, f"{server.url} does not serve {path}"
        time.sleep(0.1)


def test_skopeo_and_podman_pull_through_the_cluster_each_pinned_to_a_node(
        cluster: Cluster, tmp_path: Path) -> None:
    """An on_demand distribution and a pull-through distribution, made through node 0 and
    pulled by real clients from nodes 1 and 2: the content, whichever node serves it."""
    nodes, upstream = cluster.nodes, cluster.upstream
    nodes[0].server.setup_mirror(upstream, "clients", "fixtures/small")
    pull_through(nodes[0].server, upstream.url, base_path="hubc", name="hubc")
    v1, oci = upstream.tag("fixtures/small", "v1"), upstream.tag("fixtures/oci", "1.0")
    for node in nodes[1:]:
        _until_served(node.server, "clients/manifests/v1")

    skopeo_copy(f"{nodes[1].server.host}/clients:v1", tmp_path / "on-demand")
    assert sha256_file(tmp_path / "on-demand" / "manifest.json") == v1["digest"]
    assert dir_blobs(tmp_path / "on-demand") == v1["blobs"]
    podman_pull(f"{nodes[2].server.host}/clients:v1", tmp_path / "podman-on-demand")

    mark = upstream.mark()
    skopeo_copy(f"{nodes[2].server.host}/hubc/fixtures/oci:1.0", tmp_path / "pulled-through")
    assert sha256_file(tmp_path / "pulled-through" / "manifest.json") == oci["digest"]
    assert dir_blobs(tmp_path / "pulled-through") == oci["blobs"]
    podman_pull(f"{nodes[1].server.host}/hubc/fixtures/oci:1.0", tmp_path / "podman-through")
    # Each blob came from the upstream once, whichever node the client asked.
    for digest in oci["blobs"]:
        assert upstream.count("GET", rf"^/v2/fixtures/oci/blobs/{digest}$", mark) <= 1, digest


async def _pull_retrying(session: aiohttp.ClientSession, urls: list[str]) -> tuple[str, int]:
    """(sha256, attempts): the blob from the first url, else the next, retried on failure."""
    for attempt in range(1, 7):
        url = urls[min(attempt - 1, len(urls) - 1)]
        try:
            h = hashlib.sha256()
            async with session.get(url) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status}")
                async for chunk in resp.content.iter_chunked(1 << 20):
                    h.update(chunk)
            return "sha256:" + h.hexdigest(), attempt
        except (aiohttp.ClientError, RuntimeError, TimeoutError):
            await asyncio.sleep(0.5)
    raise AssertionError(f"no blob from {urls} in 6 attempts")


def _staging_of(data: Path, server: Lazyreg) -> list[Path]:
    return [p for p in (data / "storage" / "tmp").glob("*/*.part")
            if p.parent.name.endswith(f"-{server.proc.pid}")]


def test_kill_9_of_the_leading_server_another_takes_over_after_lease_ttl(
        postgres: PostgresServer, upstream: Upstream, tmp_path: Path) -> None:
    faults = FaultProxy(upstream.url, tmp_path / "faults.log")
    data = tmp_path / "data"
    database_url = postgres.create_database()
    nodes: list[Node] = []
    try:
        # The leader as a server of another machine: no same-host shortcut to its death.
        nodes = start_nodes(data, database_url, on_another_host("node-a"))
        leader, *others = [n.server for n in nodes]
        leader.setup_mirror(via(faults.url, upstream), "mirror", "fixtures/big")
        faults.configure(rate_kib=8 * 1024, reset=True)  # 64 MiB in about 8 s
        digest, size = big_layer(upstream)
        mark = upstream.mark()
        path = f"/v2/mirror/blobs/{digest}"

        async def scenario() -> tuple[list[tuple[str, int]], float]:
            timeout = aiohttp.ClientTimeout(total=120, sock_read=30)
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                             timeout=timeout) as session:
                # The leader's clients retry on the next node; the others on their own.
                first = asyncio.create_task(_pull_retrying(
                    session, [leader.url + path] + [others[0].url + path] * 5))
                deadline = time.monotonic() + 60
                while not _staging_of(data, leader):
                    assert time.monotonic() < deadline, "the download did not start"
                    await asyncio.sleep(0.02)
                clients = [first] + [asyncio.create_task(_pull_retrying(
                    session, [server.url + path] * 6)) for server in others * 4]
                clients += [asyncio.create_task(_pull_retrying(
                    session, [leader.url + path] + [others[1].url + path] * 5))
                    for _ in range(3)]
                while sum(p.stat().st_size for p in _staging_of(data, leader)) < 16 << 20:
                    assert time.monotonic() < deadline, "the download did not go on"
                    await asyncio.sleep(0.02)
                leader.kill()
                killed = time.monotonic()
                taken = None
                while taken is None and time.monotonic() < killed + LEASE_TTL + 10:
                    if any(_staging_of(data, s) for s in others):
                        taken = time.monotonic() - killed
                    await asyncio.sleep(0.02)
                assert taken is not None, "no server took the download over"
                return await asyncio.gather(*clients), taken

        results, taken = asyncio.run(scenario())
        assert [r[0] for r in results] == [digest] * len(results)
        # Its lease ends within lease_ttl of its last renewal; the followers look at it
        # ten times a second and take it over at once.
        assert 0.5 < taken < LEASE_TTL + 1.5, taken
        # The clients of the servers that lived read on through the takeover.
        assert [r[1] for r in results[1:9]] == [1] * 8
        # One more GET at most, and it asked for the rest only.
        assert blob_gets(upstream, digest, mark) == [200, 206]
        rows = [a for a in others[0].artifacts()["results"] if a["digest"] == digest]
        assert [r["size"] for r in rows] == [size]
        assert others[0].ok("GET", "check/")["ok"]
        print(f"\nkill -9 of the leader: taken over in {taken:.2f}s; clients' attempts:"
              f" {sorted(r[1] for r in results)}")
    finally:
        for node in nodes:
            node.server.stop()
        faults.stop()


def _took_over(servers: list[Lazyreg]) -> bool:
    return any("was lost; taking over" in s.logfile.read_text() for s in servers)


def test_three_servers_on_s3_one_download_one_object_and_a_takeover(
        postgres: PostgresServer, upstream: Upstream, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    """The same on one bucket of the real S3 server, each server with its own data
    directory (as on three machines): no staging to share, the peers' endpoints only."""
    # The S3 rig (issue 21) comes with the S3 backend; until both are on the branch, skip.
    pytest.importorskip("tests.s3rig", reason="the S3 backend and its rig are not here yet")
    s3_server: Any = request.getfixturevalue("s3_server")
    faults = FaultProxy(upstream.url, tmp_path / "faults.log")
    bucket = s3_server.new_bucket()
    database_url = postgres.create_database()
    env = s3_server.env(bucket)

    def node(i: int, prefix: list[str] | None = None) -> Node:
        return start_node(tmp_path / f"node{i}", database_url, prefix, env)

    nodes: list[Node] = []
    try:
        nodes.append(node(0, on_another_host("node-a")))
        with ThreadPoolExecutor(2) as pool:
            nodes += list(pool.map(node, [1, 2]))
        leader, *others = [n.server for n in nodes]
        leader.setup_mirror(via(faults.url, upstream), "mirror", "fixtures/big")
        digest, _ = big_layer(upstream)
        key = f"blobs/sha256/{digest[7:9]}/{digest[7:]}"

        # 30 clients over three servers: one upstream GET, one object, no upload left.
        faults.configure(rate_kib=16 * 1024, reset=True)
        mark = upstream.mark()
        pulled = asyncio.run(_thirty_clients(
            [f"{n.server.url}/v2/mirror/blobs/{digest}" for n in nodes]))
        assert [p.digest for p in pulled] == [digest] * 30
        assert blob_gets(upstream, digest, mark) == [200]
        assert max(p.first for p in pulled if p.node != 0) < min(p.last for p in pulled)
        assert s3_server.keys(bucket, "blobs/").count(key) == 1
        assert s3_server.uploads(bucket) == []

        # Its object gone (a row without its object is fetched again), fetched again, and
        # its leader killed halfway.
        s3_server.client.delete_object(Bucket=bucket, Key=key)
        faults.configure(rate_kib=8 * 1024, reset=True)
        mark = upstream.mark()
        path = f"/v2/mirror/blobs/{digest}"
        progress = f"/_cluster/blobs/{digest}/progress"

        async def scenario() -> tuple[list[tuple[str, int]], float]:
            timeout = aiohttp.ClientTimeout(total=120, sock_read=30)
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                             timeout=timeout) as session:
                clients = [asyncio.create_task(_pull_retrying(
                    session, [leader.url + path] + [others[0].url + path] * 5))]
                landed = 0
                while landed < 16 << 20:  # the leader's own account, from its endpoint
                    async with session.get(nodes[0].internal + progress,
                                           params={"after": str(landed)},
                                           headers={HEADER: sign(SECRET, "GET", progress)}
                                           ) as resp:
                        if resp.status == 200:
                            landed = (await resp.json())["landed"]
                    if len(clients) == 1 and landed:  # the leader's download is under way
                        clients += [asyncio.create_task(_pull_retrying(
                            session, [s.url + path] * 6)) for s in others * 4]
                leader.kill()
                killed = time.monotonic()
                while not _took_over(others):
                    assert time.monotonic() < killed + LEASE_TTL + 10, "no takeover"
                    await asyncio.sleep(0.05)
                taken = time.monotonic() - killed
                return await asyncio.gather(*clients), taken

        results, taken = asyncio.run(scenario())
        assert [r[0] for r in results] == [digest] * len(results)
        assert 0.5 < taken < LEASE_TTL + 1.5, taken
        assert [r[1] for r in results[1:]] == [1] * 8  # read on through the takeover
        # The bytes the dead server had are in no staging another can read: one more
        # GET, from the start.
        assert blob_gets(upstream, digest, mark) == [200, 200]
        assert s3_server.keys(bucket, "blobs/").count(key) == 1
        # The dead server's upload is aborted by the next start-up's cleanup.
        nodes[0] = node(0)
        assert s3_server.uploads(bucket) == []
        print(f"\nS3: takeover {taken:.2f}s after kill -9; uploads left: none")
    finally:
        for n in nodes:
            n.server.stop()
        faults.stop()
