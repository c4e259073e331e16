"""Where a blob is fetched from, and the one call the fetcher makes upstream.

`BlobOpener` is the part of `UpstreamClient` the fetcher uses: one method, so
that unit tests can run the fetcher against an in-process fake.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from lazyreg.upstream.body import Sink


class ChunkStream(Protocol):
    async def read(self, n: int) -> bytes:
        """Up to `n` bytes that arrive next (a small blob's whole body); b"" at the end."""
        ...

    async def readinto(self, buffer: memoryview) -> int:
        """The bytes that arrive next, into `buffer` (at most its size); 0 at the end."""
        ...


class PumpStream(ChunkStream, Protocol):
    """A body that can also push its bytes into a sink as they arrive: an upstream's
    (`lazyreg.upstream.stall.GuardedReader`); the leader prefers `pump` when it has it."""

    async def pump(self, sink: Sink, limit: int) -> bool: ...

    def resume(self) -> None: ...

    def abort(self, error: BaseException) -> None: ...


class BlobResponse(Protocol):
    @property
    def status(self) -> int:
        """200 (the body starts at byte 0) or 206 (it starts at the offset asked for)."""
        ...

    @property
    def content(self) -> ChunkStream: ...


class BlobOpener(Protocol):
    def open_blob(self, name: str, digest: str, offset: int = 0
                  ) -> AbstractAsyncContextManager[BlobResponse]: ...


@dataclass(frozen=True)
class Source:
    """A remote's client and the upstream repository name that listed the blob."""

    client: BlobOpener
    upstream_name: str
    source_id: int | None = None  # the BlobSource row, when there is one
    remote_name: str = ""
    policy: str = "on_demand"
