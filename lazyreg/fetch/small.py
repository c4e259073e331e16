"""A small blob (an image config) read whole from one source into memory.

At most `size` bytes are kept: a body that goes past them fails at once with
`DigestMismatch`, and so does one whose bytes do not hash to the digest (the
hash is taken once, by `BlobStore.put`, which the caller calls next). The body
is read under the remote's stall rule; one cut short is read again from the
start, MAX_RETRIES times with backoff.
"""

from __future__ import annotations

import asyncio

import aiohttp

from lazyreg.fetch.source import Source
from lazyreg.upstream.errors import DigestMismatch, Unavailable

CHUNK = 256 * 1024
MAX_RETRIES = 3
RETRY_BACKOFF = 0.2  # seconds before the first retry; doubling
RETRYABLE = (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError)


async def read_whole(source: Source, digest: str, size: int) -> bytes:
    """The blob's `size` bytes (unverified: `put` checks the digest)."""
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
            chunk = await resp.content.read(CHUNK)
            if not chunk:
                break
            data += chunk
            if len(data) > size:
                raise DigestMismatch(f"upstream sent more than {size} bytes for {digest}")
    if len(data) < size:
        raise DigestMismatch(f"upstream sent {len(data)} of the {size} bytes of {digest}")
    return bytes(data)
