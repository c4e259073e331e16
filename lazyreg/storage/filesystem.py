"""Filesystem backend: blobs at `<root>/<algorithm>/<hex[:2]>/<hex>`, staging under `<root>/tmp`.

A blob appears under its digest only by an atomic rename after its hash and
size were checked, so a reader of `sha256/` never sees half a blob. Each worker
stages in its own `tmp/<host>-<pid>/`, under a name made of the digest
(`sha256-<hex>.part`), so that another process on the same filesystem can
follow a download there, and a process starting up can clean what dead
processes left without touching a live one's downloads.

Readers are file descriptors, so landed spans can go out with sendfile; a
reader keeps reading the same bytes after its file is renamed into place or
unlinked. The calls here are short system calls made on the event loop;
whole-blob work (`put`, listing, cleaning) runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from lazyreg.storage.base import DigestMismatch
from lazyreg.storage.layout import ALGORITHMS, blob_key, new_hash, split_digest
from lazyreg.worker import WorkerId

STALE_AFTER = 3600.0  # seconds: another host's staging left this long is abandoned


class FileReader:
    """The bytes of one file through one descriptor; `size` fixes what has landed."""

    def __init__(self, fd: int, size: int | None = None) -> None:
        self._file: BinaryIO = os.fdopen(fd, "rb")
        self._size = size

    @property
    def file(self) -> BinaryIO:
        return self._file

    def landed(self) -> int:
        if self._size is not None:
            return self._size
        return os.fstat(self._file.fileno()).st_size

    async def read(self, offset: int, count: int) -> bytes:
        return os.pread(self._file.fileno(), count, offset)

    def close(self) -> None:
        self._file.close()


class FilesystemStaged:
    """A staging file; the write side belongs to one thread at a time."""

    def __init__(self, store: FilesystemStore, path: Path, digest: str, size: int) -> None:
        self.store, self.path, self.digest, self.size = store, path, digest, size
        self._hash = new_hash(digest)
        self.written = 0
        self._verified = False
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def write(self, data: bytes) -> None:
        # hashlib and write() release the GIL on large buffers: the caller's
        # writer thread hashes and writes while the event loop receives.
        self._hash.update(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self.written += len(data)

    def reset(self) -> None:
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        self._hash = new_hash(self.digest)
        self.written = 0
        self._verified = False

    def verify(self) -> None:
        if self._verified:
            return
        algorithm, hex_ = split_digest(self.digest)
        actual = self._hash.hexdigest()
        if self.written != self.size or actual != hex_:
            raise DigestMismatch(f"expected {self.digest} ({self.size} bytes),"
                                 f" got {algorithm}:{actual} ({self.written} bytes)")
        self._verified = True

    def open_reader(self) -> FileReader:
        return FileReader(os.open(self.path, os.O_RDONLY))

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    async def commit(self) -> str:
        try:
            self.verify()
            self._close()
            target = self.store.path_of(self.digest)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path, target)
        except BaseException:
            await self.abort()
            raise
        return blob_key(self.digest)

    async def abort(self) -> None:
        self._close()
        self.path.unlink(missing_ok=True)


class FilesystemStore:
    def __init__(self, root: Path, worker: WorkerId | None = None) -> None:
        self.root = root
        self.worker = worker or WorkerId.current()
        self.staging_root = root / "tmp"
        self.staging_dir = self.staging_root / str(self.worker)
        self.staging_dir.mkdir(parents=True, exist_ok=True)

    def path_of(self, digest: str) -> Path:
        return self.root / blob_key(digest)

    def _staging_name(self, digest: str) -> str:
        algorithm, hex_ = split_digest(digest)
        return f"{algorithm}-{hex_}.part"

    async def stat(self, digest: str) -> int | None:
        try:
            return self.path_of(digest).stat().st_size
        except FileNotFoundError:
            return None

    async def open(self, digest: str) -> FileReader | None:
        try:
            fd = os.open(self.path_of(digest), os.O_RDONLY)
        except FileNotFoundError:
            return None
        return FileReader(fd, os.fstat(fd).st_size)

    async def stage(self, digest: str, size: int) -> FilesystemStaged:
        return FilesystemStaged(self, self.staging_dir / self._staging_name(digest), digest,
                                size)

    async def open_staging(self, worker: WorkerId, digest: str) -> FileReader | None:
        path = self.staging_root / str(worker) / self._staging_name(digest)
        try:
            return FileReader(os.open(path, os.O_RDONLY))
        except FileNotFoundError:
            return None

    def put_blob(self, digest: str, data: bytes) -> str:
        """`put` for a caller in a worker thread."""
        fd, name = tempfile.mkstemp(dir=self.staging_dir, prefix="put-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            algorithm, hex_ = split_digest(digest)
            actual = new_hash(digest)
            actual.update(data)
            if actual.hexdigest() != hex_:
                raise DigestMismatch(f"expected {digest}, got {algorithm}:{actual.hexdigest()}")
            target = self.path_of(digest)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(name, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
        return blob_key(digest)

    async def put(self, digest: str, data: bytes) -> str:
        return await asyncio.to_thread(self.put_blob, digest, data)

    def put_many(self, items: list[tuple[str, bytes]]) -> None:
        """Store small blobs (digest, bytes) not stored yet, from a worker thread.

        Kept for the sync pipeline, which calls it with `asyncio.to_thread`;
        new code calls `put`.
        """
        for digest, data in items:
            if not self.path_of(digest).is_file():
                self.put_blob(digest, data)

    async def delete(self, digest: str) -> None:
        self.path_of(digest).unlink(missing_ok=True)

    def _list(self) -> list[str]:
        found = []
        for algorithm, length in ALGORITHMS.items():
            top = self.root / algorithm
            if not top.is_dir():
                continue
            for sub in sorted(top.iterdir()):
                if sub.is_dir():
                    found += [f"{algorithm}:{f.name}" for f in sorted(sub.iterdir())
                              if len(f.name) == length]
        return found

    async def iter_digests(self) -> AsyncIterator[str]:
        for digest in await asyncio.to_thread(self._list):
            yield digest

    def location(self, digest: str) -> str:
        return blob_key(digest)

    def _clean_staging(self, stale_after: float) -> int:
        removed = 0
        now = time.time()
        for entry in self.staging_root.iterdir():
            if entry == self.staging_dir:
                continue
            owner = WorkerId.parse(entry.name)
            if owner is not None and owner.on_this_host:
                stale = owner.known_dead()
            else:
                stale = now - entry.stat().st_mtime > stale_after
            if not stale:
                continue
            if entry.is_dir():
                removed += sum(1 for f in entry.rglob("*") if f.is_file())
                shutil.rmtree(entry, ignore_errors=True)
            else:
                removed += 1
                entry.unlink(missing_ok=True)
        return removed

    async def clean_staging(self, stale_after: float = STALE_AFTER) -> int:
        """Remove what dead processes left half-written; the count of files.

        A directory of this host is dead when its process is; another host's is
        judged by age, since its processes cannot be seen from here.
        """
        return await asyncio.to_thread(self._clean_staging, stale_after)
