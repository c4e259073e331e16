"""The stall rule, and byte caps, for reading upstream bodies.

A transfer that receives less than `min_rate` bytes a second, measured over the
last `timeout` seconds, is abandoned with `Stalled`: a drip-fed body frees its
connection and its download slot within about `timeout` seconds, whatever the
socket timeouts say. A small body (a manifest, a tag list page, a token) is
also read whole within a time limit and a byte cap, so that an endless or
oversized body fails with `TooLarge` having buffered at most the cap.

The meter counts bytes in a few buckets spanning the window, so its memory is
fixed whatever the transfer's length or rate.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from lazyreg.upstream.errors import Stalled, TooLarge

if TYPE_CHECKING:
    from lazyreg.upstream.body import Sink

T = TypeVar("T")

BUCKETS = 8
READ_SIZE = 64 * 1024  # what a capped read asks for at a time


@dataclass(frozen=True)
class StallRule:
    min_rate: float = 10 * 1024  # bytes per second
    timeout: float = 30.0  # seconds below min_rate before giving up


class Stream(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


class Meter:
    """Bytes received in the last `rule.timeout` seconds, in BUCKETS coarse buckets."""

    def __init__(self, rule: StallRule, now: float) -> None:
        self.rule = rule
        self.started = now
        self.width = max(rule.timeout / BUCKETS, 1e-3)
        self.threshold = rule.min_rate * rule.timeout
        self._buckets: deque[list[float]] = deque()  # [bucket start, bytes], oldest first
        self._total = 0.0

    def add(self, n: int, now: float) -> None:
        start = self.started + ((now - self.started) // self.width) * self.width
        if self._buckets and self._buckets[-1][0] == start:
            self._buckets[-1][1] += n
        else:
            self._buckets.append([start, float(n)])
        self._total += n
        self._expire(now)

    def _expire(self, now: float) -> None:
        while self._buckets and self._buckets[0][0] + self.width <= now - self.rule.timeout:
            self._total -= self._buckets.popleft()[1]

    def stalled(self, now: float) -> bool:
        if now - self.started < self.rule.timeout:
            return False
        self._expire(now)
        return self._total < self.threshold

    def deadline(self, now: float) -> float:
        """When the transfer counts as stalled if no more bytes arrive (inf: never)."""
        if self.threshold <= 0:
            return math.inf  # min_rate 0: the rule is off
        when = max(now, self.started + self.rule.timeout)
        total = self._total
        for start, n in self._buckets:
            if total < self.threshold:
                break
            when = max(when, start + self.width + self.rule.timeout)
            total -= n
        return when


class GuardedReader:
    """`read(n)` and `readinto(buffer)` of a stream, raising `Stalled` under the stall
    rule or past `deadline`.

    The same `async read(n) -> bytes` as aiohttp's StreamReader, so a consumer
    of `response.content` takes either; `readinto` needs a stream that has it
    (`lazyreg.upstream.body.BodyReader`), else it reads and copies.
    """

    def __init__(self, stream: Stream, rule: StallRule, what: str,
                 deadline: float | None = None) -> None:
        self._stream = stream
        self._what = what
        self._loop = asyncio.get_running_loop()
        self._meter = Meter(rule, self._loop.time())
        self._deadline = deadline

    async def read(self, n: int = READ_SIZE) -> bytes:
        if n <= 0:
            raise ValueError("a guarded read needs a positive size")
        data = await self._guarded(lambda: self._stream.read(n))
        self._meter.add(len(data), self._loop.time())
        return data

    async def readinto(self, buffer: memoryview) -> int:
        """Bytes received next, into `buffer`; 0 at the end of the body."""
        if not buffer:
            raise ValueError("a guarded readinto needs room")
        into = getattr(self._stream, "readinto", None)
        if into is None:
            data = await self.read(len(buffer))
            buffer[:len(data)] = data
            return len(data)
        n: int = await self._guarded(lambda: into(buffer))
        self._meter.add(n, self._loop.time())
        return n

    async def pump(self, sink: Sink, limit: int) -> bool:
        """Push up to `limit` bytes into `sink` as they arrive, under the stall rule; False,
        having taken nothing, when the stream cannot (see `lazyreg.upstream.body`)."""
        pump = getattr(self._stream, "pump", None)
        if pump is None:
            return False
        return bool(await pump(sink, self._meter.rule, self._what, limit))

    def resume(self) -> None:
        """A pumped sink has room again."""
        resume = getattr(self._stream, "resume", None)
        if resume is not None:
            resume()

    def abort(self, error: BaseException) -> None:
        """End a pump with `error`."""
        abort = getattr(self._stream, "abort", None)
        if abort is not None:
            abort(error)

    async def _guarded(self, receive: Callable[[], Awaitable[T]]) -> T:
        while True:
            now = self._loop.time()
            if self._deadline is not None and now >= self._deadline:
                raise Stalled(f"{self._what}: not received in time")
            if self._meter.stalled(now):
                rule = self._meter.rule
                raise Stalled(f"{self._what}: slower than {rule.min_rate:.0f} bytes/s"
                              f" for {rule.timeout:g}s")
            wake = self._meter.deadline(now)
            if self._deadline is not None:
                wake = min(wake, self._deadline)
            timeout = asyncio.timeout_at(None if math.isinf(wake) else wake)
            try:
                async with timeout:
                    return await receive()
            except TimeoutError:
                if timeout.expired():
                    continue  # our own wake-up: judge the rate again
                raise


def declared_length(headers: Mapping[str, str]) -> int | None:
    value = headers.get("Content-Length")
    return int(value) if value is not None and value.isdigit() else None


async def read_capped(stream: Stream, headers: Mapping[str, str], cap: int, rule: StallRule,
                      time_limit: float, what: str) -> bytes:
    """A whole body of at most `cap` bytes, under the stall rule and within `time_limit`."""
    length = declared_length(headers)
    if length is not None and length > cap:
        raise TooLarge(f"{what} is {length} bytes, more than the limit of {cap}")
    loop = asyncio.get_running_loop()
    reader = GuardedReader(stream, rule, what, deadline=loop.time() + time_limit)
    chunks: list[bytes] = []
    total = 0
    while True:
        # Never ask for more than one byte past the cap: an endless body costs the cap.
        data = await reader.read(min(READ_SIZE, cap + 1 - total))
        if not data:
            return b"".join(chunks)
        total += len(data)
        if total > cap:
            raise TooLarge(f"{what} is more than the limit of {cap} bytes")
        chunks.append(data)
