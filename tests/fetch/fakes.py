"""An in-process upstream for one blob, for the fetcher's unit tests.

It speaks the one call the fetcher makes (`BlobOpener.open_blob`), counts the
offsets asked for, and can hold a body at an offset, cut it, corrupt its last
byte, ignore Range, refuse, or make callers wait for a download slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from lazyreg.storage.layout import digest_of


class FakeUpstream:
    def __init__(self, *blobs: bytes, chunk: int = 64 * 1024, slots: int = 8) -> None:
        self.blobs = {digest_of(b): b for b in blobs}
        self.chunk = chunk
        self.slots = asyncio.Semaphore(slots)
        self.requests: list[int] = []  # the offset of each request that got a slot
        self.waiting = 0  # callers waiting for a slot
        self.hold_at: int | None = None  # bodies stop here until `release` is set
        self.held = asyncio.Event()  # a body reached `hold_at`
        self.release = asyncio.Event()
        self.cut_at: int | None = None  # the next body is cut here
        self.corrupt = False
        self.ignore_range = False
        self.refuse: BaseException | None = None

    @asynccontextmanager
    async def open_blob(self, name: str, digest: str, offset: int = 0
                        ) -> AsyncIterator[FakeResponse]:
        self.waiting += 1
        try:
            await self.slots.acquire()
        finally:
            self.waiting -= 1
        try:
            self.requests.append(offset)
            if self.refuse is not None:
                raise self.refuse
            start = 0 if self.ignore_range else offset
            yield FakeResponse(206 if start else 200, FakeStream(self, self.blobs[digest], start))
        finally:
            self.slots.release()


@dataclass
class FakeResponse:
    status: int
    content: FakeStream


class FakeStream:
    def __init__(self, upstream: FakeUpstream, data: bytes, start: int) -> None:
        self.up = upstream
        self.data = data
        self.pos = start
        self.cut_at, upstream.cut_at = upstream.cut_at, None

    async def read(self, n: int = -1) -> bytes:
        up = self.up
        await asyncio.sleep(0)  # a network read lets others run
        if self.pos >= len(self.data):
            return b""
        if up.hold_at is not None and self.pos >= up.hold_at and not up.release.is_set():
            up.held.set()
            await up.release.wait()
        if self.cut_at is not None and self.pos >= self.cut_at:
            raise aiohttp.ClientPayloadError("cut by the fake upstream")
        end = min(self.pos + up.chunk, len(self.data), self.pos + n if n > 0 else len(self.data))
        for stop in (up.hold_at, self.cut_at):
            if stop is not None and self.pos < stop < end:
                end = stop
        chunk = bytearray(self.data[self.pos:end])
        if up.corrupt and end == len(self.data):
            chunk[-1] ^= 0xFF
        self.pos = end
        return bytes(chunk)

    async def readinto(self, buffer: memoryview) -> int:
        data = await self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)
