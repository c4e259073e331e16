"""Blob bodies read into our own buffers (`lazyreg.upstream.body`), from a real aiohttp server:
plain and TLS connections handed over from aiohttp's parser, odd framings that are not,
bodies that end early or go on too long, sinks that run out of room, stalls."""

from __future__ import annotations

import asyncio
import os
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from lazyreg.upstream.body import BodyEndedEarly, BodyReader, TooLong, _Receiver
from lazyreg.upstream.errors import Stalled
from lazyreg.upstream.stall import GuardedReader, StallRule
from tests.e2e.test_transport import _self_signed

DATA = os.urandom(3 * 1024 * 1024 + 17)
RULE = StallRule()

Fetch = Callable[[web.StreamResponse | Callable[..., Awaitable[web.StreamResponse]]],
                 Awaitable[aiohttp.ClientResponse]]


@pytest.fixture(params=["http", "https"])
async def fetch(request: pytest.FixtureRequest, tmp_path: Path
                ) -> AsyncIterator[Callable[..., Awaitable[aiohttp.ClientResponse]]]:
    """GET a handler's answer from a real server, over plain HTTP or TLS."""
    servers: list[TestServer] = []
    session = aiohttp.ClientSession(auto_decompress=False, read_bufsize=4 * 1024 * 1024)
    server_ssl: ssl.SSLContext | None = None
    client_ssl: ssl.SSLContext | bool = True
    if request.param == "https":
        cert, key = _self_signed(tmp_path)
        server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ssl.load_cert_chain(cert, key)
        client_ssl = ssl.create_default_context(cafile=str(cert))
        client_ssl.check_hostname = False

    async def get(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                  ) -> aiohttp.ClientResponse:
        app = web.Application()
        app.router.add_get("/blob", handler)
        server = TestServer(app)
        await server.start_server(ssl=server_ssl)
        servers.append(server)
        scheme = "https" if server_ssl else "http"
        return await session.get(f"{scheme}://127.0.0.1:{server.port}/blob", ssl=client_ssl)
    yield get
    await session.close()
    for server in servers:
        await server.close()


async def plain(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Length": str(len(DATA))})
    await resp.prepare(request)
    for i in range(0, len(DATA), 100_000):  # in pieces, with pauses between some
        await resp.write(DATA[i:i + 100_000])
        if i % 700_000 == 0:
            await asyncio.sleep(0.01)
    return resp


class Sink:
    """Rooms of `size` bytes; none while `starving` (then `reader.resume()` once fed)."""

    def __init__(self, size: int, total: int, starve: bool = False) -> None:
        self.out = bytearray(total)
        self.got = 0
        self.size = size
        self.starve = starve
        self.starving = 0  # how many more times to say "no room"
        self.starved: list[int] = []

    def room(self) -> memoryview | None:
        if self.starving:
            self.starving -= 1
            self.starved.append(self.got)
            return None
        return memoryview(self.out)[self.got:self.got + self.size]

    def received(self, n: int) -> None:
        self.got += n
        if self.starve and self.got // 2**20 != (self.got - n) // 2**20:
            self.starving = 1  # run out of room at every MiB


async def test_readinto_hands_the_connection_over_and_reads_every_byte(fetch: Fetch) -> None:
    resp = await fetch(plain)
    body = BodyReader(resp)
    out = bytearray()
    buffer = memoryview(bytearray(70_001))
    while n := await body.readinto(buffer):
        out += buffer[:n]
    assert body.handed_over
    assert bytes(out) == DATA
    body.close()
    assert resp.connection is None  # closed, never back in aiohttp's pool


async def test_pump_fills_the_sinks_rooms_and_waits_while_it_has_none(fetch: Fetch) -> None:
    resp = await fetch(plain)
    body = BodyReader(resp)
    sink = Sink(256 * 1024, len(DATA), starve=True)
    loop = asyncio.get_running_loop()

    def resume_when_starved() -> None:
        if sink.starved and sink.starving == 0:
            body.resume()
        loop.call_later(0.002, resume_when_starved)
    loop.call_soon(resume_when_starved)
    assert await body.pump(sink, RULE, "blob", len(DATA))
    assert sink.got == len(DATA)
    assert bytes(sink.out) == DATA
    assert len(sink.starved) >= 2  # it did wait for room
    body.close()


async def test_a_body_longer_than_wanted_is_too_long(fetch: Fetch) -> None:
    resp = await fetch(plain)
    body = BodyReader(resp)
    sink = Sink(1024 * 1024, len(DATA))
    with pytest.raises(TooLong):
        await body.pump(sink, RULE, "blob", len(DATA) - 1000)
    assert bytes(sink.out[:sink.got]) == DATA[:sink.got]
    body.close()


async def test_a_body_cut_short_ends_early(fetch: Fetch) -> None:
    async def cut(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(len(DATA))})
        await resp.prepare(request)
        await resp.write(DATA[:500_000])
        assert request.transport is not None
        request.transport.close()
        return resp
    resp = await fetch(cut)
    body = BodyReader(resp)
    sink = Sink(1024 * 1024, len(DATA))
    with pytest.raises(BodyEndedEarly):
        await body.pump(sink, RULE, "blob", len(DATA))
    assert bytes(sink.out[:sink.got]) == DATA[:sink.got]
    assert sink.got <= 500_000
    body.close()


async def test_a_chunked_body_is_not_handed_over_and_reads_through_aiohttp(
        fetch: Fetch) -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(DATA), 300_000):
            await resp.write(DATA[i:i + 300_000])
        return resp
    resp = await fetch(chunked)
    body = BodyReader(resp)
    assert not await body.pump(Sink(1024, len(DATA)), RULE, "blob", len(DATA))
    out = bytearray()
    buffer = memoryview(bytearray(1024 * 1024))
    while n := await body.readinto(buffer):
        out += buffer[:n]
    assert bytes(out) == DATA
    assert not body.handed_over
    body.close()


async def test_a_pump_that_stalls_fails_within_the_rule(fetch: Fetch) -> None:
    async def drip(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(len(DATA))})
        await resp.prepare(request)
        await resp.write(DATA[:100_000])
        while request.transport is not None and not request.transport.is_closing():
            await asyncio.sleep(0.05)  # nothing more, until the client gives up
        return resp
    resp = await fetch(drip)
    reader = GuardedReader(BodyReader(resp), StallRule(min_rate=1024 * 1024, timeout=0.3),
                           "blob x")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(Stalled, match="blob x"):
        await reader.pump(Sink(1024 * 1024, len(DATA)), len(DATA))
    assert loop.time() - started < 2.0
    resp.close()


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.reading = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return False


async def test_bytes_that_came_just_before_a_cancellation_are_kept() -> None:
    receiver = _Receiver(_Transport(), asyncio.Protocol(), 10, deque())
    first = memoryview(bytearray(10))
    task = asyncio.create_task(receiver.readinto(first))
    await asyncio.sleep(0)  # it waits for bytes
    buffer = receiver.get_buffer(-1)
    buffer[:4] = b"abcd"
    receiver.buffer_updated(4)  # they came...
    task.cancel()  # ...and the reader was cancelled before it saw them
    with pytest.raises(asyncio.CancelledError):
        await task
    again = memoryview(bytearray(10))
    assert await receiver.readinto(again) == 4
    assert bytes(again[:4]) == b"abcd"
