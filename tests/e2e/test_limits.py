"""Descriptors are a bounded resource: a server limited to 256 of them still syncs and serves
200 blobs at once, and a client that stops reading is cut, which frees what it held.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import resource
import socket
import time
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.expect import layers
from tests.rig import Lazyreg, Upstream, start_lazyreg

pytestmark = pytest.mark.e2e

NOFILE = 256


def limited(data_dir: Path, **env: str) -> Lazyreg:
    server = start_lazyreg(data_dir, env=env)
    resource.prlimit(server.proc.pid, resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
    return server


def open_fds(server: Lazyreg) -> int:
    return len(os.listdir(f"/proc/{server.proc.pid}/fd"))


def staging_files(server: Lazyreg) -> list[Path]:
    return [p for p in (server.data_dir / "storage" / "tmp").rglob("*") if p.is_file()]


def unique_layers(upstream: Upstream) -> list[str]:
    """The layer of each `fixtures/many` tag that no other tag shares."""
    tags = upstream.index["repos"]["fixtures/many"]
    counts: dict[str, int] = {}
    for entry in tags.values():
        for digest in layers(entry):
            counts[digest] = counts.get(digest, 0) + 1
    return sorted(d for d, n in counts.items() if n == 1)


async def _pull_all(urls: list[str]) -> list[str]:
    async def pull(session: aiohttp.ClientSession, url: str) -> str:
        async with session.get(url) as resp:
            assert resp.status == 200, (resp.status, await resp.text())
            return "sha256:" + hashlib.sha256(await resp.read()).hexdigest()
    connector = aiohttp.TCPConnector(limit=0)  # one connection per pull, all at once
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=300)) as session:
        return await asyncio.gather(*(pull(session, u) for u in urls))


def test_immediate_sync_of_200_tags_under_256_descriptors(tmp_path: Path,
                                                          upstream: Upstream) -> None:
    server = limited(tmp_path / "data")
    try:
        task = server.setup_mirror(upstream, "many", "fixtures/many", policy="immediate")
        assert task["state"] == "completed", task
        wanted = set().union(*(set(e["blobs"]) for e in
                               upstream.index["repos"]["fixtures/many"].values()))
        assert len(wanted) > 400
        assert wanted <= server.artifact_digests()
        assert staging_files(server) == []
        assert server.ok("GET", "check/")["ok"]
    finally:
        server.stop()


def test_200_concurrent_lazy_pulls_under_256_descriptors(tmp_path: Path,
                                                         upstream: Upstream) -> None:
    server = limited(tmp_path / "data")
    try:
        server.setup_mirror(upstream, "many", "fixtures/many")
        digests = unique_layers(upstream)
        assert len(digests) == 200
        assert not set(digests) & server.artifact_digests()
        urls = [f"{server.url}/v2/many/blobs/{d}" for d in digests]
        assert asyncio.run(_pull_all(urls)) == digests
        deadline = time.monotonic() + 30
        while not set(digests) <= server.artifact_digests():  # the last commits
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert staging_files(server) == []
        assert server.ok("GET", "check/")["ok"]
    finally:
        server.stop()


def _read_nothing(server: Lazyreg, path: str) -> socket.socket:
    """A client that asks for a blob and then reads nothing."""
    sock = socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return sock


def _drain(sock: socket.socket) -> int:
    """Read until the server closes the connection; the bytes received."""
    total = 0
    sock.settimeout(60)
    try:
        while data := sock.recv(1 << 20):
            total += len(data)
    except ConnectionResetError:
        pass
    sock.close()
    return total


def storage_fds(server: Lazyreg) -> list[str]:
    """The files under storage the server holds open (blobs it sends, staging it writes)."""
    root, found = str((server.data_dir / "storage").resolve()), []
    for fd in os.listdir(f"/proc/{server.proc.pid}/fd"):
        try:
            target = os.readlink(f"/proc/{server.proc.pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith(root):
            found.append(target)
    return found


def test_a_client_that_reads_nothing_is_cut(tmp_path: Path, upstream: Upstream) -> None:
    server = start_lazyreg(tmp_path / "data", env={"LAZYREG_SEND_TIMEOUT": "2"})
    try:
        server.setup_mirror(upstream, "big", "fixtures/big")
        digest = next(iter(layers(upstream.tag("fixtures/big", "latest"))))
        size = upstream.index["blobs"][digest]
        for phase in ("being fetched", "stored"):
            started = time.monotonic()
            stalled = _read_nothing(server, f"/v2/big/blobs/{digest}")
            deadline = started + 30
            while not storage_fds(server):  # until it sends from a file
                assert time.monotonic() < deadline, phase
                time.sleep(0.01)
            while storage_fds(server):  # until the client is cut and the file closed
                assert time.monotonic() < deadline, phase
                time.sleep(0.1)
            took = time.monotonic() - started
            assert _drain(stalled) < size, phase  # then the connection ended, short
            assert took < 20, (phase, took)
            assert digest in server.artifact_digests()  # the download went on without it
    finally:
        server.stop()
