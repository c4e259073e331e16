"""The storage interface: stage bytes while hashing, commit only verified content."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol


class DigestMismatch(ValueError):
    """Staged bytes do not hash to (or are not the size of) the expected digest."""


class StagedBlob(Protocol):
    """Bytes on their way into storage; invisible to readers of the store."""

    path: Path  # the staging file, readable while it grows
    size: int

    def write(self, data: bytes) -> None: ...
    def hexdigest(self) -> str: ...
    def discard(self) -> None: ...


class BlobStore(Protocol):
    def stage(self) -> StagedBlob: ...

    def commit(self, staged: StagedBlob, digest: str, size: int) -> str:
        """Verify and move into place; return the location. Raises DigestMismatch."""
        ...

    def exists(self, digest: str) -> bool: ...
    def local_path(self, digest: str) -> Path: ...
    def delete(self, digest: str) -> None: ...
    def iter_digests(self) -> Iterator[str]: ...
    def clean_staging(self) -> int: ...
