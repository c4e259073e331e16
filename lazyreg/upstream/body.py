"""A blob body read into the caller's own buffers, with one copy per byte where it can be.

`BodyReader(response)` reads an aiohttp response's body two ways:

- `read(n)`: aiohttp's own, for small bodies;
- `readinto(buffer)`: the bytes received next, into `buffer`; 0 at the end.

On its first `readinto`, a body with plain framing (a `Content-Length`, no chunked
transfer coding, no content coding) leaves aiohttp's parser: what aiohttp had
already buffered is handed out first, then the connection's transport gets a
small buffered protocol (`_Receiver`) that the kernel copies into directly
(`recv_into`, or the TLS layer's read into our buffer). aiohttp's path costs two
more copies of every byte (its parser's and its stream's) and a Python object
per socket read; for a blob that was the larger part of receiving it. Any other
body is read through aiohttp and copied into the buffer.

A connection handed over this way is not reused: `close()` closes it, and the
owner calls it whatever happens. A `readinto` cancelled after bytes reached its
buffer keeps them for the next call, so no byte is lost to a timeout.

Bounds: at most `Content-Length` bytes are taken from the connection; bytes that
arrive while no `readinto` waits go to a SPILL-byte buffer, and reading pauses
once it is full.
"""

from __future__ import annotations

import asyncio
from collections import deque

import aiohttp

SPILL = 256 * 1024


class BodyEndedEarly(aiohttp.ClientPayloadError):
    """The connection closed before the body's `Content-Length` bytes arrived."""


def _plain_length(response: aiohttp.ClientResponse) -> int | None:
    """The body's length when its bytes are exactly what the connection carries."""
    headers = response.headers
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        return None
    if headers.get("Content-Encoding", "identity").lower() != "identity":
        return None
    length = headers.get("Content-Length", "")
    return int(length) if length.isdigit() else None


class _Receiver(asyncio.BufferedProtocol):
    """Receives a body's remaining bytes straight into the buffer a `readinto` offers."""

    def __init__(self, transport: asyncio.Transport, original: asyncio.BaseProtocol,
                 remaining: int) -> None:
        self.transport = transport
        self.original = original  # aiohttp's protocol: told when the connection is lost
        self.remaining = remaining  # bytes of the body not received yet
        self._target: memoryview | None = None
        self._waiter: asyncio.Future[int] | None = None
        self._spill = bytearray(0)  # bytes that came while nobody waited: [start:end]
        self._start = self._end = 0
        self._kept = b""  # bytes a cancelled readinto received, for the next one
        self._paused = False
        self._ended: BaseException | None = None  # the connection ended early: this error

    # ------------------------------------------------------------ asyncio's side

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._target is not None:
            return self._target
        # Nobody waits: keep what comes until someone does, up to SPILL bytes.
        if not self._spill:
            self._spill = bytearray(SPILL)
        room = min(SPILL - self._end, max(self.remaining, 1))
        return memoryview(self._spill)[self._end:self._end + room]

    def buffer_updated(self, nbytes: int) -> None:
        if self._target is not None:  # never longer than what remains of the body
            self.remaining -= nbytes
            self._target = None
            waiter, self._waiter = self._waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result(nbytes)
        else:
            take = min(nbytes, self.remaining)  # past the body's end: not the body's
            self.remaining -= take
            self._end += take
            if self._end >= SPILL:
                self._pause()
        if self.remaining <= 0:
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

    def _pause(self) -> None:
        if not self._paused and not self.transport.is_closing():
            self._paused = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self._paused and not self.transport.is_closing():
            self._paused = False
            self.transport.resume_reading()

    # ------------------------------------------------------------ the reader's side

    def _take(self, buffer: memoryview) -> int:
        """Bytes kept from before, if any, into `buffer`."""
        if self._kept:
            n = min(len(buffer), len(self._kept))
            buffer[:n] = self._kept[:n]
            self._kept = self._kept[n:]
            return n
        n = min(len(buffer), self._end - self._start)
        buffer[:n] = self._spill[self._start:self._start + n]
        self._start += n
        if self._start == self._end:
            self._start = self._end = 0
            if self.remaining > 0:
                self._resume()
        return n

    async def readinto(self, buffer: memoryview) -> int:
        if self._kept or self._end > self._start:
            return self._take(buffer)
        if self.remaining <= 0:
            return 0
        if self._ended is not None:
            raise self._ended
        target = buffer[:self.remaining]
        waiter = asyncio.get_running_loop().create_future()
        self._target, self._waiter = target, waiter
        self._resume()
        try:
            n = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # The bytes came in just before the cancellation: keep them.
                self._kept = bytes(target[:waiter.result()])
            if self._target is target:
                self._target, self._waiter = None, None
            raise
        if n == 0 and self._ended is not None:
            raise self._ended
        return n


class BodyReader:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._receiver: _Receiver | None = None
        self._buffered: deque[bytes] = deque()
        self._started = False

    async def read(self, n: int = -1) -> bytes:
        if self._started:
            raise RuntimeError("read() after readinto() on the same body")
        return await self._response.content.read(n)

    def _hand_over(self) -> None:
        """Take the connection from aiohttp's parser, if the body allows it."""
        response, content = self._response, self._response.content
        length = _plain_length(response)
        connection = response.connection
        if (length is None or connection is None or connection.transport is None
                or connection.protocol is None or content.exception() is not None
                or content.is_eof()):
            return
        buffered = 0
        while True:
            chunk = content.read_nowait()
            if not chunk:
                break
            self._buffered.append(chunk)
            buffered += len(chunk)
        transport = connection.transport
        if not isinstance(transport, asyncio.Transport):
            return
        receiver = _Receiver(transport, connection.protocol, length - buffered)
        transport.set_protocol(receiver)
        transport.resume_reading()  # aiohttp may have paused it; the receiver says when now
        self._receiver = receiver

    async def readinto(self, buffer: memoryview) -> int:
        if not self._started:
            self._started = True
            self._hand_over()
        if self._buffered:
            chunk = self._buffered[0]
            n = min(len(chunk), len(buffer))
            buffer[:n] = chunk[:n]
            if n == len(chunk):
                self._buffered.popleft()
            else:
                self._buffered[0] = chunk[n:]
            return n
        if self._receiver is not None:
            return await self._receiver.readinto(buffer)
        data = await self._response.content.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    @property
    def handed_over(self) -> bool:
        return self._receiver is not None

    def close(self) -> None:
        """Close the connection if it left aiohttp's parser (it cannot be reused)."""
        if self._receiver is not None:
            self._response.close()
