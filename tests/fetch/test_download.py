"""Download: readers follow the staging file, never get the last byte of a bad blob, resume."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from lazyreg.fetch.download import Download, Source
from lazyreg.storage.filesystem import FilesystemStore
from lazyreg.upstream.client import RemoteConfig, UpstreamClient
from lazyreg.upstream.errors import DigestMismatch

BLOB = os.urandom(3 * 1024 * 1024 + 17)
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


class FakeBlobServer:
    """Serves BLOB slowly, honouring Range; can cut or corrupt the first response."""

    def __init__(self) -> None:
        self.requests: list[str | None] = []
        self.cut_after: int | None = None
        self.corrupt = False

    async def handle(self, request: web.Request) -> web.StreamResponse:
        rng = request.headers.get("Range")
        self.requests.append(rng)
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        body = bytearray(BLOB[start:])
        if self.corrupt:
            body[-1] ^= 0xFF
        resp = web.StreamResponse(status=206 if rng else 200,
                                  headers={"Content-Length": str(len(body))})
        await resp.prepare(request)
        limit = self.cut_after if self.cut_after is not None else len(body)
        self.cut_after = None
        for i in range(0, limit, 256 * 1024):
            await resp.write(bytes(body[i:min(i + 256 * 1024, limit)]))
            await asyncio.sleep(0.005)
        if limit < len(body):
            assert request.transport is not None
            request.transport.abort()
            return resp
        await resp.write_eof()
        return resp


@pytest.fixture
async def source() -> AsyncIterator[tuple[Source, FakeBlobServer]]:
    fake = FakeBlobServer()
    app = web.Application()
    app.router.add_get("/v2/x/blobs/{digest}", fake.handle)
    server = TestServer(app)
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        client = UpstreamClient(session, RemoteConfig(url=str(server.make_url("/")),
                                                      backoff=0.01))
        yield Source(client, "x"), fake
    await server.close()


async def collect(download: Download, start: int = 0, end: int | None = None) -> bytes:
    out = bytearray()
    async for chunk in download.read(download.open(), start, end):
        out += chunk
    return bytes(out)


async def _ok(_: Download) -> None:
    return None


async def _ignore(_s: Source, _e: BaseException) -> None:
    return None


async def test_readers_join_one_download_and_get_bytes_before_it_ends(
        tmp_path: Path, source: tuple[Source, FakeBlobServer]) -> None:
    src, fake = source
    download = Download(DIGEST, len(BLOB), FilesystemStore(tmp_path).stage())
    first_byte_before_end: list[bool] = []

    async def reader() -> bytes:
        out = bytearray()
        async for chunk in download.read(download.open()):
            if not out:
                first_byte_before_end.append(not download.finished.is_set())
            out += chunk
        return bytes(out)

    readers = [asyncio.create_task(reader()) for _ in range(5)]
    await download.run([src], _ok, _ignore)
    results = await asyncio.gather(*readers)
    assert all(r == BLOB for r in results)
    assert fake.requests == [None]
    assert all(first_byte_before_end)


async def test_corrupt_blob_errors_readers_without_giving_the_last_byte(
        tmp_path: Path, source: tuple[Source, FakeBlobServer]) -> None:
    src, fake = source
    fake.corrupt = True
    download = Download(DIGEST, len(BLOB), FilesystemStore(tmp_path).stage())
    received = bytearray()

    async def reader() -> None:
        async for chunk in download.read(download.open()):
            received.extend(chunk)
    task = asyncio.create_task(reader())
    with pytest.raises(DigestMismatch):
        await download.run([src], _ok, _ignore)
    with pytest.raises(DigestMismatch):
        await task
    assert len(received) < len(BLOB)
    assert not download.staged.path.exists()


async def test_cut_connection_resumes_with_range(
        tmp_path: Path, source: tuple[Source, FakeBlobServer]) -> None:
    src, fake = source
    fake.cut_after = 1024 * 1024
    download = Download(DIGEST, len(BLOB), FilesystemStore(tmp_path).stage())
    verified: list[Any] = []

    async def on_verified(d: Download) -> None:
        verified.append(d.staged.hexdigest())
    reader = asyncio.create_task(collect(download))
    await download.run([src], on_verified, _ignore)
    assert await reader == BLOB
    assert verified == [DIGEST[7:]]
    assert fake.requests[0] is None
    assert fake.requests[1] is not None and fake.requests[1].startswith("bytes=")
    assert len(fake.requests) == 2
