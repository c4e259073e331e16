"""A blob body received into the caller's own buffers, with one copy per byte where it can be.

`BodyReader(response)` reads an aiohttp response's body three ways:

- `read(n)`: aiohttp's own, for small bodies;
- `readinto(buffer)`: the bytes received next, into `buffer`; 0 at the end;
- `pump(sink, rule, what, limit)`: the body pushed into the sink's buffers as it
  arrives (`Sink.room`, `Sink.received`), with no task switch per piece; the
  cheapest, for a blob. It answers False, having taken nothing, when the body
  cannot be pumped (see below): the caller then uses `readinto`.

When first asked, a body with plain framing (a `Content-Length`, no chunked
transfer coding, no content coding) leaves aiohttp's parser: what aiohttp had
already buffered is handed out first, then the connection's transport gets a
small buffered protocol (`_Receiver`) that the kernel copies into directly
(`recv_into`, or the TLS layer's read into our buffer). aiohttp's path costs two
more copies of every byte (its parser's and its stream's) and a Python object
per socket read; for a blob that was the larger part of receiving it. Any other
body is read through aiohttp (`readinto` copies; `pump` declines).

A connection handed over this way is not reused: `close()` closes it, and the
owner calls it whatever happens. A `readinto` cancelled after bytes reached its
buffer keeps them for the next call, so no byte is lost to a timeout.

`pump` applies the stall rule itself (`lazyreg.upstream.stall`), with one timer
rather than one per piece; the time the sink makes it wait for room is not the
upstream's, and does not count. It stops after `limit` bytes: a body longer
than that raises `TooLong`; a body that ends before just returns (the caller
sees the count and resumes).

Bounds: at most `Content-Length` bytes are taken from the connection; bytes that
arrive while nobody has room go to a SPILL-byte buffer, and reading pauses
once it is full.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

import aiohttp

from lazyreg.upstream.errors import Stalled, UpstreamError
from lazyreg.upstream.stall import Meter, StallRule

SPILL = 256 * 1024


class BodyEndedEarly(aiohttp.ClientPayloadError):
    """The connection closed before the body's `Content-Length` bytes arrived."""


class TooLong(UpstreamError):
    """The body goes on past the bytes the caller wanted."""


class Sink(Protocol):
    def room(self) -> memoryview | None:
        """Where the next bytes go; None while there is no room (the sink calls
        `BodyReader.resume` once there is)."""
        ...

    def received(self, n: int) -> None:
        """`n` bytes went into the start of the last room given."""
        ...


def _plain_length(response: aiohttp.ClientResponse) -> int | None:
    """The body's length when its bytes are exactly what the connection carries."""
    headers = response.headers
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        return None
    if headers.get("Content-Encoding", "identity").lower() != "identity":
        return None
    length = headers.get("Content-Length", "")
    return int(length) if length.isdigit() else None


class _Pump:
    """What a `pump` in progress needs: its sink, its limit, its stall meter, its end."""

    def __init__(self, sink: Sink, rule: StallRule, what: str, limit: int,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.sink, self.rule, self.what, self.limit = sink, rule, what, limit
        self.loop = loop
        self.meter = Meter(rule, loop.time())
        self.done: asyncio.Future[None] = loop.create_future()
        self.timer: asyncio.TimerHandle | None = None
        self.room: memoryview | None = None  # the sink's room, when it has some
        self.starved = False  # the sink has no room: waiting for `resume`

    def finish(self, error: BaseException | None = None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.done.done():
            if error is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(error)


class _Receiver(asyncio.BufferedProtocol):
    """Receives a body's remaining bytes straight into the reader's or the sink's buffers."""

    def __init__(self, transport: asyncio.Transport, original: asyncio.BaseProtocol,
                 remaining: int, pending: deque[bytes]) -> None:
        self.transport = transport
        self.original = original  # aiohttp's protocol: told when the connection is lost
        self.remaining = remaining  # bytes of the body not taken from the connection yet
        self.expected = remaining  # what was left of the body at the hand-over
        self.pending = pending  # bytes taken but not handed out yet, in order
        self._target: memoryview | None = None  # a readinto's buffer
        self._waiter: asyncio.Future[int] | None = None
        self._pump: _Pump | None = None
        self._spill: memoryview | None = None
        self._paused = False
        self._ended: BaseException | None = None  # the connection ended early: this error

    # ------------------------------------------------------------ asyncio's side

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._target is not None:
            return self._target
        pump = self._pump
        if pump is not None and not self.pending and not pump.done.done():
            if pump.room is None and not pump.starved:
                pump.room = pump.sink.room()
                pump.starved = pump.room is None
            if pump.room is not None:
                return pump.room[:max(1, min(self.remaining, pump.limit))]
        # Nobody has room: keep what comes until someone does (reading then pauses).
        if self._spill is None:
            self._spill = memoryview(bytearray(SPILL))
        return self._spill[:max(1, min(SPILL, self.remaining))]

    def buffer_updated(self, nbytes: int) -> None:
        if self._target is not None:  # never longer than what remains of the body
            self.remaining -= nbytes
            self._target = None
            waiter, self._waiter = self._waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result(nbytes)
        elif self._pump is not None and self._pump.room is not None and not self.pending:
            self._pumped(self._pump, nbytes)
        else:
            take = min(nbytes, self.remaining)  # past the body's end: not the body's
            self.remaining -= take
            assert self._spill is not None
            if take:
                self.pending.append(bytes(self._spill[:take]))
            self._pause()
        if self.remaining <= 0:
            self._pause()

    def _pumped(self, pump: _Pump, n: int) -> None:
        self.remaining -= n
        pump.limit -= n
        pump.room = None
        pump.meter.add(n, pump.loop.time())
        try:
            pump.sink.received(n)
        except BaseException as exc:
            pump.finish(exc)
            self._pause()
            return
        self._after_pumped(pump)

    def _after_pumped(self, pump: _Pump) -> None:
        if pump.limit <= 0:
            pump.finish(TooLong(f"{pump.what}: more bytes than expected")
                        if self.remaining > 0 else None)
        elif self.remaining <= 0:
            pump.finish()  # the body ended first: the caller sees how far it got
        else:
            pump.room = pump.sink.room()
            if pump.room is None:
                pump.starved = True
                self._pause()
            return
        self._pause()

    def eof_received(self) -> bool:
        self._stop(None)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop(exc)
        self.original.connection_lost(exc)

    def _stop(self, exc: Exception | None) -> None:
        if self.remaining > 0 and self._ended is None:
            self._ended = BodyEndedEarly(
                f"the connection closed {self.remaining} bytes before the body's end"
                + (f": {exc}" if exc else ""))
        self._target = None
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(0)
        if self._pump is not None and not self.pending:
            self._pump.finish(self._ended)

    def _pause(self) -> None:
        if not self._paused and not self.transport.is_closing():
            self._paused = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self._paused and self.remaining > 0 and not self.transport.is_closing():
            self._paused = False
            self.transport.resume_reading()

    # ------------------------------------------------------------ readinto

    def _take(self, buffer: memoryview) -> int:
        """Bytes taken earlier, into `buffer`."""
        chunk = self.pending[0]
        n = min(len(buffer), len(chunk))
        buffer[:n] = chunk[:n]
        if n == len(chunk):
            self.pending.popleft()
        else:
            self.pending[0] = chunk[n:]
        if not self.pending:
            self._resume()
        return n

    async def readinto(self, buffer: memoryview) -> int:
        if self.pending:
            return self._take(buffer)
        if self.remaining <= 0:
            return 0
        if self._ended is not None:
            raise self._ended
        target = buffer[:self.remaining]
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._target, self._waiter = target, waiter
        self._resume()
        try:
            n = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                # The bytes came in just before the cancellation: keep them.
                self.pending.append(bytes(target[:waiter.result()]))
            if self._target is target:
                self._target, self._waiter = None, None
            raise
        if n == 0 and self._ended is not None:
            raise self._ended
        return n

    # ------------------------------------------------------------ pump

    async def pump(self, sink: Sink, rule: StallRule, what: str, limit: int) -> None:
        loop = asyncio.get_running_loop()
        pump = self._pump = _Pump(sink, rule, what, limit, loop)
        self._arm(pump)
        self.resume()
        try:
            await pump.done
        finally:
            pump.finish()
            self._pump = None
            self._pause()

    def resume(self) -> None:
        """The sink has room again (or the pump starts): hand out what waits, then read on."""
        pump = self._pump
        if pump is None or pump.done.done():
            return
        if pump.starved:
            pump.starved = False
            pump.meter = Meter(pump.rule, pump.loop.time())  # the wait was ours, not theirs
            self._arm(pump)
        while self.pending:
            room = pump.sink.room()
            if room is None:
                pump.starved = True
                return
            room = room[:pump.limit]
            n = self._take_pending(room)
            pump.limit -= n
            pump.sink.received(n)
            if pump.limit <= 0:
                self._after_pumped(pump)
                return
        if self.remaining <= 0 or self._ended is not None:
            pump.finish(self._ended)
            return
        self._resume()

    def _take_pending(self, room: memoryview) -> int:
        chunk = self.pending[0]
        n = min(len(room), len(chunk))
        room[:n] = chunk[:n]
        if n == len(chunk):
            self.pending.popleft()
        else:
            self.pending[0] = chunk[n:]
        return n

    def _arm(self, pump: _Pump) -> None:
        """The stall check: a timer at the moment the rate would fall below the rule."""
        if pump.timer is not None:
            pump.timer.cancel()
            pump.timer = None
        when = pump.meter.deadline(pump.loop.time())
        if when != float("inf"):
            pump.timer = pump.loop.call_at(when, self._check, pump)

    def _check(self, pump: _Pump) -> None:
        pump.timer = None
        if pump.done.done() or pump.starved:
            return
        if pump.meter.stalled(pump.loop.time()):
            rule = pump.rule
            pump.finish(Stalled(f"{pump.what}: slower than {rule.min_rate:.0f} bytes/s"
                                f" for {rule.timeout:g}s"))
            self._pause()
        else:
            self._arm(pump)


class BodyReader:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._receiver: _Receiver | None = None
        self._started = False

    async def read(self, n: int = -1) -> bytes:
        if self._started:
            raise RuntimeError("read() after readinto() or pump() on the same body")
        return await self._response.content.read(n)

    def _hand_over(self) -> None:
        """Take the connection from aiohttp's parser, if the body allows it."""
        self._started = True
        response, content = self._response, self._response.content
        length = _plain_length(response)
        connection = response.connection
        if (length is None or connection is None or connection.protocol is None
                or not isinstance(connection.transport, asyncio.Transport)
                or content.exception() is not None or content.is_eof()):
            return
        pending: deque[bytes] = deque()
        buffered = 0
        while chunk := content.read_nowait():
            pending.append(chunk)
            buffered += len(chunk)
        transport = connection.transport
        receiver = _Receiver(transport, connection.protocol, length - buffered, pending)
        transport.set_protocol(receiver)
        # aiohttp may have paused reading; the receiver says when from now on.
        receiver._paused = True
        self._receiver = receiver

    async def readinto(self, buffer: memoryview) -> int:
        if not self._started:
            self._hand_over()
        if self._receiver is not None:
            return await self._receiver.readinto(buffer)
        data = await self._response.content.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    async def pump(self, sink: Sink, rule: StallRule, what: str, limit: int) -> bool:
        """Push up to `limit` bytes into `sink`; False, having taken nothing, if this
        body cannot be pumped (then use `readinto`)."""
        if not self._started:
            self._hand_over()
        if self._receiver is None:
            return False
        await self._receiver.pump(sink, rule, what, limit)
        return True

    def resume(self) -> None:
        """A pumped sink has room again."""
        if self._receiver is not None:
            self._receiver.resume()

    def abort(self, error: BaseException) -> None:
        """End a pump with `error` (the sink cannot go on)."""
        if self._receiver is not None and self._receiver._pump is not None:
            self._receiver._pump.finish(error)
            self._receiver._pause()

    @property
    def total_bytes(self) -> int:
        """Bytes of the body received so far, whichever way (read or not)."""
        received = self._response.content.total_bytes
        if self._receiver is not None:
            received += self._receiver.expected - max(self._receiver.remaining, 0)
        return received

    @property
    def handed_over(self) -> bool:
        return self._receiver is not None

    def close(self) -> None:
        """Close the connection if it left aiohttp's parser (it cannot be reused)."""
        if self._receiver is not None:
            self._response.close()
