"""What the lazy store hands a reader: the blob's bytes as spans that have landed.

A body yields `(reader, offset, count)`: `count` bytes at `offset` are readable
now from `reader` (with `reader.read`, or with sendfile when `reader.file` is a
file). A stored blob yields its range at once; a blob being fetched yields
spans as they arrive (`lazyreg.fetch.growing`), many from the download's memory
(`reader.file` is None): what such a reader's `read` returns is valid until the
body is asked for its next span. Every reader a body yielded stays open until
the body is closed, and the owner of a body must close it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

from lazyreg.storage.base import BlobReader

Span = tuple[BlobReader, int, int]


class BlobBody(Protocol):
    @property
    def digest(self) -> str: ...

    @property
    def size(self) -> int: ...

    def spans(self, start: int, end: int) -> AsyncGenerator[Span, None]: ...

    def close(self) -> None: ...


class StoredBody:
    """A blob that is in storage: every byte has landed and was verified."""

    def __init__(self, digest: str, reader: BlobReader) -> None:
        self.digest = digest
        self.reader = reader
        self.size = reader.landed()

    async def spans(self, start: int, end: int) -> AsyncGenerator[Span, None]:
        if start < end:
            yield self.reader, start, end - start

    def close(self) -> None:
        self.reader.close()
