"""Filesystem backend: `<root>/sha256/ab/<hex>`, staging under `<root>/tmp`.

A blob appears under its digest only by an atomic rename after its hash and
size were checked, so a reader of `sha256/` never sees half a blob. Each server
process stages in its own `tmp/<host>-<pid>/`, so that a process starting up can
clean what dead processes left without touching a live one's downloads.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from lazyreg.oci.digest import DIGEST_RE
from lazyreg.storage.base import DigestMismatch


class FilesystemStaged:
    def __init__(self, staging_dir: Path, name: str | None = None) -> None:
        if name is None:
            fd, path = tempfile.mkstemp(dir=staging_dir, prefix="blob-")
        else:
            # A known name lets other processes find (and follow) this download.
            path = str(staging_dir / name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._file = os.fdopen(fd, "wb", buffering=0)
        self.path = Path(path)
        self.size = 0
        self._hash = hashlib.sha256()

    def write(self, data: bytes) -> None:
        # hashlib releases the GIL on large buffers: callers run this in a
        # worker thread so that hashing overlaps receiving.
        self._hash.update(data)
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            view = view[written:]
        self.size += len(data)

    def reset(self) -> None:
        """Start over at byte 0 in the same file (readers keep their descriptors)."""
        self._file.seek(0)
        self._file.truncate()
        self.size = 0
        self._hash = hashlib.sha256()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


class FilesystemStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs_dir = root / "sha256"
        self.staging_root = root / "tmp"
        self.host = socket.gethostname()
        self.staging_dir = self.staging_root / f"{self.host}-{os.getpid()}"
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        self.staging_dir.mkdir(parents=True, exist_ok=True)

    def stage(self, name: str | None = None) -> FilesystemStaged:
        return FilesystemStaged(self.staging_dir, name)

    def staging_path(self, worker_id: str, name: str) -> Path:
        """Where process `worker_id` stages `name` (see `stage`)."""
        return self.staging_root / worker_id / name

    def local_path(self, digest: str) -> Path:
        if not DIGEST_RE.match(digest):
            raise ValueError(f"invalid digest {digest!r}")
        hex_ = digest[7:]
        return self.blobs_dir / hex_[:2] / hex_

    def location(self, digest: str) -> str:
        return str(self.local_path(digest).relative_to(self.root))

    def commit(self, staged: FilesystemStaged, digest: str, size: int) -> str:
        staged.close()
        actual = "sha256:" + staged.hexdigest()
        if actual != digest or staged.size != size:
            staged.discard()
            raise DigestMismatch(
                f"expected {digest} ({size} bytes), got {actual} ({staged.size} bytes)")
        target = self.local_path(digest)
        target.parent.mkdir(exist_ok=True)
        os.replace(staged.path, target)
        return self.location(digest)

    def put_many(self, items: list[tuple[str, bytes]]) -> None:
        """Store small blobs (digest, bytes) not stored yet; one call, for one worker thread."""
        for digest, data in items:
            if not self.exists(digest):
                self.put_bytes(data, digest)

    def put_bytes(self, data: bytes, digest: str) -> str:
        staged = self.stage()
        try:
            staged.write(data)
        except BaseException:
            staged.discard()
            raise
        return self.commit(staged, digest, len(data))

    def exists(self, digest: str) -> bool:
        return self.local_path(digest).is_file()

    def size(self, digest: str) -> int:
        return self.local_path(digest).stat().st_size

    def delete(self, digest: str) -> None:
        self.local_path(digest).unlink(missing_ok=True)

    def iter_digests(self) -> Iterator[str]:
        for sub in sorted(self.blobs_dir.iterdir()):
            if sub.is_dir():
                for f in sorted(sub.iterdir()):
                    yield "sha256:" + f.name

    def clean_staging(self, stale_after: float = 3600.0) -> int:
        """Remove what dead processes left half-written; returns the count of files.

        A directory of this host is dead when its process is; another host's is
        judged by age, since its processes cannot be seen from here.
        """
        removed = 0
        now = time.time()
        for entry in self.staging_root.iterdir():
            if entry == self.staging_dir:
                continue
            host, _, pid = entry.name.rpartition("-")
            if host == self.host and pid.isdigit():
                stale = not Path(f"/proc/{pid}").exists()
            else:
                stale = now - entry.stat().st_mtime > stale_after
            if stale:
                removed += (sum(1 for f in entry.rglob("*") if f.is_file())
                            if entry.is_dir() else 1)
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        return removed
