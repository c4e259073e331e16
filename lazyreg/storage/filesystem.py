"""Filesystem backend: blobs at `<root>/<algorithm>/<hex[:2]>/<hex>`, staging under `<root>/tmp`.

A blob appears under its digest only by an atomic rename after its hash and
size were checked, so a reader of `sha256/` never sees half a blob. Each worker
stages in its own `tmp/<host>-<pid>/`, under a name made of the digest
(`sha256-<hex>.part`), so that another process on the same filesystem can
follow a download there, and a process starting up can clean what dead
processes left without touching a live one's downloads.

Readers are file descriptors, so landed spans can go out with sendfile; a
reader keeps reading the same bytes after its file is renamed into place or
unlinked. Staged blocks that are whole and aligned are written with O_DIRECT
(`FilesystemStaged`). The calls here are short system calls made on the event loop;
whole-blob work (`put`, listing, cleaning) runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from lazyreg.storage.base import Chunk, DigestMismatch, LiveDownloads
from lazyreg.storage.layout import ALGORITHMS, blob_key, new_hash, split_digest
from lazyreg.worker import WorkerId

STALE_AFTER = 3600.0  # seconds: another host's staging left this long is abandoned
FD_WAIT = 30.0  # seconds an open waits for a descriptor while the process has none left
FD_RETRY = 0.02
DIRECT_ALIGN = 4096  # what O_DIRECT needs of offsets, lengths and addresses on any disk here


async def _open(path: Path, flags: int, mode: int = 0o644) -> int:
    """`os.open`, waiting while the process is out of descriptors (EMFILE), up to FD_WAIT.

    Descriptors free up as other transfers end: waiting for one is back-pressure,
    where failing would turn a busy moment into failed pulls.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FD_WAIT
    while True:
        try:
            return os.open(path, flags, mode)
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE) or loop.time() > deadline:
                raise
        await asyncio.sleep(FD_RETRY)


class _Descriptor:
    """One open file shared by its users (a staging's writer and readers); closed with the last."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.users = 1

    def take(self) -> _Descriptor:
        self.users += 1
        return self

    def drop(self) -> None:
        self.users -= 1
        if self.users == 0:
            os.close(self.fd)


class FileReader:
    """The bytes of one file; `size` fixes how many have landed (a stored blob).

    Reads name their offset (pread, sendfile with an offset), so readers sharing
    one descriptor with each other and with the writer never disturb each other.
    """

    def __init__(self, descriptor: _Descriptor, size: int | None = None) -> None:
        self._descriptor = descriptor
        self._file: BinaryIO = os.fdopen(descriptor.fd, "rb", buffering=0, closefd=False)
        self._size = size

    @property
    def file(self) -> BinaryIO:
        return self._file

    def landed(self) -> int:
        if self._size is not None:
            return self._size
        return os.fstat(self._descriptor.fd).st_size

    async def read(self, offset: int, count: int) -> Chunk:
        return os.pread(self._descriptor.fd, count, offset)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
            self._descriptor.drop()


def _pwrite(fd: int, view: memoryview, offset: int) -> None:
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _aligned(data: Chunk, offset: int) -> bool:
    """Whether `data` can be written at `offset` with O_DIRECT: address, length and offset
    on DIRECT_ALIGN boundaries (read-only buffers, whose address we cannot take, cannot)."""
    if offset % DIRECT_ALIGN or len(data) % DIRECT_ALIGN or not data:
        return False
    try:
        address = ctypes.addressof(ctypes.c_char.from_buffer(data))
    except (TypeError, ValueError):
        return False
    return address % DIRECT_ALIGN == 0


class FilesystemStaged:
    """A staging file: one descriptor, written at explicit offsets and shared with readers.

    Whole aligned blocks are written through a second, O_DIRECT descriptor when
    the filesystem has one: the bytes go from the caller's buffer to the disk
    without filling the page cache (no copy, no dirty pages to throttle on, and
    no memory to fault in for a blob that may never be read again); anything
    else (a short last block, an unaligned buffer, a filesystem without O_DIRECT)
    through the page cache. Readers use the buffered descriptor; the kernel keeps
    the two coherent.

    `update` belongs to one thread and `append` to one thread at a time.
    """

    def __init__(self, store: FilesystemStore, path: Path, digest: str, size: int,
                 fd: int, direct_fd: int | None) -> None:
        self.store, self.path, self.digest, self.size = store, path, digest, size
        self._hash = new_hash(digest)
        self._hashed = 0
        self.written = 0
        self._verified = False
        self._descriptor: _Descriptor | None = _Descriptor(fd)
        self._direct = direct_fd

    def _fd(self) -> int:
        if self._descriptor is None:
            raise ValueError(f"the staging of {self.digest} is closed")
        return self._descriptor.fd

    def update(self, data: Chunk) -> None:
        # hashlib releases the GIL on large buffers.
        self._hash.update(data)
        self._hashed += len(data)

    def append(self, data: Chunk) -> None:
        view = memoryview(data)
        offset = self.written
        if self._direct is not None:
            # Up to the next page boundary through the page cache, then whole pages
            # directly: a page is written one way only.
            head = min(len(view), -offset % DIRECT_ALIGN)
            _pwrite(self._fd(), view[:head], offset)
            view, offset = view[head:], offset + head
            pages = len(view) - len(view) % DIRECT_ALIGN
            if pages and _aligned(view[:pages], offset):
                done = self._pwrite_direct(view[:pages], offset)
                view, offset = view[done:], offset + done
        _pwrite(self._fd(), view, offset)
        self.written = offset + len(view)

    def _pwrite_direct(self, view: memoryview, offset: int) -> int:
        """Write whole pages with O_DIRECT; how much was written (the rest goes through
        the page cache: after a short write, or on a filesystem that refuses it)."""
        assert self._direct is not None
        done = 0
        try:
            while done < len(view):
                n = os.pwrite(self._direct, view[done:], offset + done)
                done += n
                if n == 0 or done % DIRECT_ALIGN:
                    break
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self._close_direct()  # alignment this filesystem does not take
        return done

    def write(self, data: Chunk) -> None:
        self.update(data)
        self.append(data)

    def reset(self) -> None:
        os.ftruncate(self._fd(), 0)
        self._hash = new_hash(self.digest)
        self._hashed = 0
        self.written = 0
        self._verified = False

    def verify(self) -> None:
        if self._verified:
            return
        algorithm, hex_ = split_digest(self.digest)
        actual = self._hash.hexdigest()
        if self._hashed != self.size or actual != hex_:
            raise DigestMismatch(f"expected {self.digest} ({self.size} bytes),"
                                 f" got {algorithm}:{actual} ({self._hashed} bytes)")
        self._verified = True

    def open_reader(self) -> FileReader:
        """A reader on the staging's own descriptor: no new descriptor is opened."""
        if self._descriptor is None:
            raise ValueError(f"the staging of {self.digest} is closed")
        return FileReader(self._descriptor.take())

    def _close_direct(self) -> None:
        if self._direct is not None:
            os.close(self._direct)
            self._direct = None

    def _close(self) -> None:
        self._close_direct()
        if self._descriptor is not None:
            self._descriptor.drop()
            self._descriptor = None

    async def commit(self) -> str:
        try:
            self.verify()
            if self.written != self.size:
                raise DigestMismatch(f"{self.digest}: {self.written} of {self.size} bytes"
                                     " stored")
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
    def __init__(self, root: Path, worker: WorkerId | None = None, *,
                 direct_io: bool = True) -> None:
        self.root = root
        self.direct_io = direct_io and hasattr(os, "O_DIRECT")
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
            fd = await _open(self.path_of(digest), os.O_RDONLY)
        except FileNotFoundError:
            return None
        return FileReader(_Descriptor(fd), os.fstat(fd).st_size)

    async def stage(self, digest: str, size: int) -> FilesystemStaged:
        path = self.staging_dir / self._staging_name(digest)
        fd = await _open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        direct = None
        if self.direct_io:
            try:
                direct = os.open(path, os.O_WRONLY | os.O_DIRECT)
            except OSError:  # no O_DIRECT here (EINVAL), or no descriptor left: buffered
                direct = None
        return FilesystemStaged(self, path, digest, size, fd, direct)

    async def open_staging(self, worker: WorkerId, digest: str) -> FileReader | None:
        path = self.staging_root / str(worker) / self._staging_name(digest)
        try:
            return FileReader(_Descriptor(await _open(path, os.O_RDONLY)))
        except FileNotFoundError:
            return None

    def _put(self, fd: int, name: Path, digest: str, data: bytes) -> str:
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
            name.unlink(missing_ok=True)
        return blob_key(digest)

    async def put(self, digest: str, data: bytes) -> str:
        split_digest(digest)
        name = self.staging_dir / f"put-{uuid.uuid4().hex}.part"
        fd = await _open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        return await asyncio.to_thread(self._put, fd, name, digest, data)

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

    async def clean_staging(self, live: LiveDownloads | None = None,
                            stale_after: float = STALE_AFTER) -> int:
        """Remove what dead processes left half-written; the count of files.

        A directory of this host is dead when its process is; another host's is
        judged by age, since its processes cannot be seen from here (`live` is
        not needed: every staging file is in its process's directory).
        """
        return await asyncio.to_thread(self._clean_staging, stale_after)

    async def ready(self) -> None:
        await asyncio.to_thread(self._usable)

    def _usable(self) -> None:
        if not self.root.is_dir():
            raise OSError(f"storage directory {self.root} is missing")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise OSError(f"storage directory {self.root} is not writable")

    async def capacity(self) -> tuple[int | None, int | None]:
        try:
            usage = await asyncio.to_thread(shutil.disk_usage, self.root)
        except OSError:
            return None, None  # unmounted, say: the status still answers
        return usage.total, usage.free

    async def presign(self, digest: str, method: str) -> str | None:
        return None  # served by us, with sendfile

    async def close(self) -> None:
        pass

    def __str__(self) -> str:
        return str(self.root.resolve())
