"""Send a blob body (`lazyreg.fetch.BlobBody`) as an HTTP response.

- Each span that has landed goes out with sendfile when its reader has a file
  (a stored blob, or the staging file of one being fetched), else is read and
  written: a blob being fetched is mostly sent from the download's memory, as
  views written to the socket without a copy of our own (over TLS, copied
  first: the TLS layer may hold what it is given). A stored blob and one being
  fetched take the same path.
- While spans go out with sendfile, the connection's unsent bytes are kept low
  (TCP_NOTSENT_LOWAT, NOTSENT_LOWAT): with megabytes queued in our socket, each
  acknowledgement from the client made the kernel push more of them in the
  client's own time, which cost a reading client (aiohttp hashing the body, on
  loopback) about a fifth more CPU than distribution's bytes did; topped up by
  us as the client reads, they cost it less than distribution's. Written spans
  leave it at the system's default: the bytes a small socket buffer refuses
  would be copied into the transport's buffer instead.
- An error before the first byte is a proper registry error; after the
  headers (which carry the full length) it cuts the connection, so the client
  sees a failure, never a short or wrong blob that ends cleanly.
- A client that leaves ends the response, not the download it was reading.
- A slow reader is cut, which frees its descriptors. Bytes go out in slices,
  and each slice must be taken within `timeout` seconds. A slice is 1 MiB at
  first, then what the client took in `timeout / 8` seconds at its last pace
  (at most 64 MiB): a client that takes less than 1 MiB in `timeout` seconds,
  or slows down more than eightfold at once, is disconnected, and a fast one
  costs a few sendfile calls per blob.
- The body is closed whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from aiohttp import web

from lazyreg.fetch import BlobBody
from lazyreg.storage.base import BlobReader, Chunk

log = logging.getLogger(__name__)

SLICE_MIN = 1024 * 1024
SLICE_MAX = 64 * 1024 * 1024
PACE = 8  # a slice is what the client took in timeout / PACE seconds
READ_CHUNK = 1024 * 1024
NOTSENT_LOWAT = 64 * 1024  # bytes left unsent in the socket before it is writable again


class SlowClient(Exception):
    pass


async def send_body(request: web.Request, body: BlobBody, span: tuple[int, int] | None,
                    headers: dict[str, str], timeout: float) -> web.StreamResponse:
    start, end = span or (0, body.size)
    response = web.StreamResponse(status=206 if span else 200, headers=headers)
    response.content_length = end - start
    if span:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{body.size}"
    spans = body.spans(start, end)
    try:
        async with contextlib.aclosing(spans):
            first = await anext(spans, None)  # a failure here is still a clean answer
            await response.prepare(request)
            sender = _Sender(request, response, timeout)
            try:
                if first is not None:
                    await sender.send(*first)
                async for reader, offset, count in spans:
                    await sender.send(reader, offset, count)
            except ConnectionError as exc:
                log.info("client left during blob %s: %s", body.digest, exc)
                return response
            except Exception as exc:
                log.warning("cutting the response for blob %s: %s", body.digest, exc)
                if request.transport is not None:
                    request.transport.abort()
                return response
        await response.write_eof()
        return response
    finally:
        body.close()


class _Sender:
    """One response's bytes, in slices that follow the client's pace."""

    def __init__(self, request: web.Request, response: web.StreamResponse,
                 timeout: float) -> None:
        self.request, self.response, self.timeout = request, response, timeout
        self.slice = SLICE_MIN
        transport = request.transport
        # asyncio's sendfile over TLS reads at the file's position, which readers
        # sharing a descriptor would move under each other: read at offsets instead.
        self.sendfile = transport is not None and transport.get_extra_info("sslcontext") is None
        self._low = False  # whether the socket's unsent bytes are kept low

    def _keep_unsent_low(self, low: bool) -> None:
        """Low for sendfile; not for written spans, whose bytes would pile up (and be
        copied) in the transport's buffer instead (0: the system's default)."""
        self._low = low
        transport = self.request.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None and hasattr(socket, "TCP_NOTSENT_LOWAT"):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT,
                                NOTSENT_LOWAT if low else 0)

    async def send(self, reader: BlobReader, offset: int, count: int) -> None:
        loop = asyncio.get_running_loop()
        file = reader.file if self.sendfile else None
        if (file is not None) != self._low:
            self._keep_unsent_low(file is not None)
        while count:
            transport = self.request.transport
            if transport is None or transport.is_closing():
                raise ConnectionResetError("client connection lost")
            n = min(count, self.slice if file is not None else READ_CHUNK)
            data: Chunk = b""
            if file is None:
                data = await reader.read(offset, n)
                if len(data) != n:
                    raise OSError(f"read {len(data)} of {n} bytes at {offset}")
                if not self.sendfile and isinstance(data, memoryview):
                    data = bytes(data)  # TLS: the view is the download's, for now only
            started = loop.time()
            try:
                async with asyncio.timeout(self.timeout):
                    if file is not None:
                        sent = await loop.sendfile(transport, file, offset, n)
                        if sent != n:  # the file is shorter than it said it was
                            raise OSError(f"sent {sent} of {n} bytes at {offset}")
                    else:
                        await self.response.write(data)
            except TimeoutError as exc:
                raise SlowClient(f"the client took less than {n} bytes"
                                 f" in {self.timeout:g}s") from exc
            pace = n / max(loop.time() - started, 1e-6)
            self.slice = max(SLICE_MIN, min(SLICE_MAX, int(pace * self.timeout / PACE)))
            offset += n
            count -= n
