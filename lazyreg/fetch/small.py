"""A small blob (an image config) read whole from one source into memory.

At most `size` bytes are kept, and at most one more read: a body longer than
`size` fails at once with `TooLarge`, one shorter with `DigestMismatch`; whether
the bytes hash to the digest is checked once, by `BlobStore.put`, which the
caller calls next. The body is read under the remote's stall rule and within
`time_limit` seconds in all (then `Stalled`); one cut short is read again from
the start, MAX_RETRIES times with backoff.
"""

from __future__ import annotations

import asyncio

import aiohttp

from lazyreg.fetch.source import Source
from lazyreg.upstream.errors import DigestMismatch, Stalled, TooLarge, Unavailable

CHUNK = 256 * 1024
MAX_RETRIES = 3
RETRY_BACKOFF = 0.2  # seconds before the first retry; doubling
RETRYABLE = (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError)


async def read_whole(source: Source, digest: str, size: int, time_limit: float) -> bytes:
    """The blob's `size` bytes (unverified: `put` checks the digest)."""
    limit = asyncio.timeout(time_limit)
    try:
        async with limit:
            return await _with_retries(source, digest, size)
    except TimeoutError as exc:
        if limit.expired():
            raise Stalled(f"blob {digest}: not received in {time_limit:g}s") from exc
        raise


async def _with_retries(source: Source, digest: str, size: int) -> bytes:
    for attempt in range(MAX_RETRIES + 1):
        try:
            return await _read(source, digest, size)
        except RETRYABLE as exc:
            if attempt == MAX_RETRIES:
                raise Unavailable(f"blob {digest}: {exc or type(exc).__name__}") from exc
            await asyncio.sleep(RETRY_BACKOFF * 2 ** attempt)
    raise AssertionError("unreachable")


async def _read(source: Source, digest: str, size: int) -> bytes:
    data = bytearray()
    async with source.client.open_blob(source.upstream_name, digest) as resp:
        while True:
            # Never more than one byte past the size: an endless body costs `size`.
            chunk = await resp.content.read(min(CHUNK, size + 1 - len(data)))
            if not chunk:
                break
            data += chunk
            if len(data) > size:
                raise TooLarge(f"blob {digest} is more than the limit of {size} bytes")
    if len(data) < size:
        raise DigestMismatch(f"upstream sent {len(data)} of the {size} bytes of {digest}")
    return bytes(data)
