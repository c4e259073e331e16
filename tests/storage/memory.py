"""An in-memory storage backend: proves the interface needs no files, and serves unit tests.

Like an object store, it has no file to hand to sendfile and cannot share a
staging with another worker (`open_staging` is always None).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from lazyreg.storage.base import Chunk, DigestMismatch
from lazyreg.storage.layout import blob_key, new_hash, split_digest
from lazyreg.worker import WorkerId


class MemoryReader:
    def __init__(self, data: bytearray | bytes, size: int | None = None) -> None:
        self._data = data
        self._size = size
        self.closed = False

    @property
    def file(self) -> None:
        return None

    def landed(self) -> int:
        return len(self._data) if self._size is None else self._size

    async def read(self, offset: int, count: int) -> Chunk:
        assert not self.closed, "read after close"
        return bytes(self._data[offset:min(offset + count, self.landed())])

    def close(self) -> None:
        self.closed = True


class MemoryStaged:
    def __init__(self, store: MemoryStore, digest: str, size: int) -> None:
        split_digest(digest)
        self.store, self.digest, self.size = store, digest, size
        self._data = bytearray()
        self._hash = new_hash(digest)
        self._hashed = 0
        self._verified = False
        self.done = False
        store.staging[id(self)] = self

    @property
    def written(self) -> int:
        return len(self._data)

    def update(self, data: Chunk) -> None:
        assert not self.done, "update after commit or abort"
        self._hash.update(data)
        self._hashed += len(data)

    def append(self, data: Chunk) -> None:
        assert not self.done, "append after commit or abort"
        self._data += data

    def write(self, data: Chunk) -> None:
        self.update(data)
        self.append(data)

    def reset(self) -> None:
        del self._data[:]  # in place: readers see what lands from now on
        self._hash = new_hash(self.digest)
        self._hashed = 0
        self._verified = False

    def verify(self) -> None:
        if not self._verified:
            if (self._hashed != self.size
                    or self._hash.hexdigest() != split_digest(self.digest)[1]):
                raise DigestMismatch(f"expected {self.digest} ({self.size} bytes)")
            self._verified = True

    def open_reader(self) -> MemoryReader:
        return MemoryReader(self._data)

    async def commit(self) -> str:
        try:
            self.verify()
            if self.written != self.size:
                raise DigestMismatch(f"{self.digest}: {self.written} of {self.size} bytes")
            self.store.blobs[self.digest] = bytes(self._data)
        finally:
            self._release()
        return blob_key(self.digest)

    async def abort(self) -> None:
        self._release()

    def _release(self) -> None:
        self.done = True
        self.store.staging.pop(id(self), None)


class MemoryStore:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.staging: dict[int, MemoryStaged] = {}
        self.staging_lookups = 0  # calls of open_staging, which always finds nothing

    async def stat(self, digest: str) -> int | None:
        split_digest(digest)
        data = self.blobs.get(digest)
        return None if data is None else len(data)

    async def open(self, digest: str) -> MemoryReader | None:
        split_digest(digest)
        data = self.blobs.get(digest)
        return None if data is None else MemoryReader(data)

    async def stage(self, digest: str, size: int) -> MemoryStaged:
        return MemoryStaged(self, digest, size)

    async def open_staging(self, worker: WorkerId, digest: str) -> None:
        self.staging_lookups += 1
        return None

    async def put(self, digest: str, data: bytes) -> str:
        staged = await self.stage(digest, len(data))
        staged.write(data)
        return await staged.commit()

    async def delete(self, digest: str) -> None:
        self.blobs.pop(digest, None)

    async def iter_digests(self) -> AsyncIterator[str]:
        for digest in sorted(self.blobs):
            yield digest

    def location(self, digest: str) -> str:
        return blob_key(digest)

    async def clean_staging(self) -> int:
        return 0
