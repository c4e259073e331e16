"""Storage whose disk misbehaves, at the lowest layer (the staged blob's writes).

- `SlowDisk`: every write waits until the test opens the gate (a disk that lags
  as far as you like behind the network: writeback throttling, a busy device);
- `QuotaDisk`: writes fail with ENOSPC once the bytes staged reach a quota, as a
  full disk does, and nothing is left half-written on the "disk".

Both wrap the filesystem backend, so the rest (readers, rename, clean-up) is real.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

from lazyreg.storage.base import Chunk
from lazyreg.storage.filesystem import FilesystemStaged, FilesystemStore


class _GatedStaged(FilesystemStaged):
    gate: threading.Event
    appended: int

    def append(self, data: Chunk) -> None:
        if not self.gate.wait(timeout=30):
            raise TimeoutError("the test never opened the disk's gate")
        super().append(data)
        type(self).appended += len(data)


class SlowDisk(FilesystemStore):
    """A disk that takes nothing until `gate` is set."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gate = threading.Event()
        self.staged_class = type("Gated", (_GatedStaged,), {"gate": self.gate, "appended": 0})

    async def stage(self, digest: str, size: int) -> FilesystemStaged:
        staged = await super().stage(digest, size)
        staged.__class__ = self.staged_class
        return staged

    @property
    def appended(self) -> int:
        return int(self.staged_class.appended)


class _QuotaStaged(FilesystemStaged):
    quota: int
    used: list[int]

    def append(self, data: Chunk) -> None:
        if self.used[0] + len(data) > self.quota:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        super().append(data)
        self.used[0] += len(data)


class QuotaDisk(FilesystemStore):
    """A disk with room for `quota` bytes of staging in all."""

    def __init__(self, root: Path, quota: int) -> None:
        super().__init__(root)
        self.used = [0]
        self.staged_class = type("Quota", (_QuotaStaged,), {"quota": quota, "used": self.used})

    async def stage(self, digest: str, size: int) -> FilesystemStaged:
        staged = await super().stage(digest, size)
        staged.__class__ = self.staged_class
        return staged
