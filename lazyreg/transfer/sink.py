"""Where an export writes: a directory, a tar, or a gzipped tar, streamed member by member.

A sink writes under a temporary name beside its target (`<target>.part`) and
renames it into place only in `finish`: a failed or interrupted export leaves
no half-written layout under the name a user asked for, and `discard` removes
the temporary one. Members are written in pieces as they come (`add` takes an
async iterator of chunks), so memory stays flat whatever the archive's size;
file writes and compression run in a worker thread, not on the event loop.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import shutil
import tarfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO, Protocol

from lazyreg.storage.base import Chunk
from lazyreg.transfer.layout import kind_of

BLOCK = tarfile.BLOCKSIZE  # 512: a tar member's data is padded to it
# Gzip level of `.tar.gz` exports: layers are compressed already, so a higher
# level costs CPU time and saves next to nothing.
GZIP_LEVEL = 1


class Sink(Protocol):
    async def add(self, name: str, size: int, chunks: AsyncIterator[Chunk]) -> None:
        """Write member `name` of exactly `size` bytes from `chunks`."""
        ...

    async def finish(self) -> None:
        """Make the layout appear under its target name."""
        ...

    async def discard(self) -> None:
        """Remove everything written so far."""
        ...


def open_sink(target: Path) -> Sink:
    kind = kind_of(target)
    if kind == "dir":
        return DirSink(target)
    return TarSink(target, gzipped=kind == "tar.gz")


def _part(target: Path) -> Path:
    return target.with_name(target.name + ".part")


class DirSink:
    def __init__(self, target: Path) -> None:
        self.target = target
        self.part = _part(target)
        if self.part.exists():
            shutil.rmtree(self.part)  # an earlier export that died
        self.part.mkdir()

    async def add(self, name: str, size: int, chunks: AsyncIterator[Chunk]) -> None:
        path = self.part / name
        path.parent.mkdir(parents=True, exist_ok=True)
        out = await asyncio.to_thread(path.open, "wb")
        try:
            written = 0
            async for chunk in chunks:
                written += len(chunk)
                await asyncio.to_thread(out.write, chunk)
            if written != size:
                raise ValueError(f"{name}: {written} bytes written, {size} expected")
        finally:
            await asyncio.to_thread(out.close)

    async def finish(self) -> None:
        await asyncio.to_thread(os.rename, self.part, self.target)

    async def discard(self) -> None:
        await asyncio.to_thread(shutil.rmtree, self.part, True)


class TarSink:
    """A POSIX (pax) tar, written in one pass: a header, the data, padding; two zero
    blocks at the end. Directories get entries before their first file."""

    def __init__(self, target: Path, *, gzipped: bool) -> None:
        self.target = target
        self.part = _part(target)
        self._raw: BinaryIO = self.part.open("wb")
        self._out: BinaryIO = self._raw
        if gzipped:
            self._out = gzip.GzipFile(fileobj=self._raw, mode="wb",  # type: ignore[assignment]
                                      compresslevel=GZIP_LEVEL, mtime=0)
        self._dirs: set[str] = set()
        self._mtime = int(time.time())

    def _header(self, name: str, size: int, directory: bool = False) -> bytes:
        info = tarfile.TarInfo(name + "/" if directory else name)
        info.size = 0 if directory else size
        info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
        info.mode = 0o755 if directory else 0o644
        info.mtime = self._mtime
        return info.tobuf(format=tarfile.PAX_FORMAT)

    async def add(self, name: str, size: int, chunks: AsyncIterator[Chunk]) -> None:
        headers = b""
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            directory = "/".join(parts[:i])
            if directory not in self._dirs:
                self._dirs.add(directory)
                headers += self._header(directory, 0, directory=True)
        await asyncio.to_thread(self._out.write, headers + self._header(name, size))
        written = 0
        async for chunk in chunks:
            written += len(chunk)
            if written > size:
                raise ValueError(f"{name}: more than the {size} bytes expected")
            await asyncio.to_thread(self._out.write, chunk)
        if written != size:
            raise ValueError(f"{name}: {written} bytes written, {size} expected")
        padding = -size % BLOCK
        if padding:
            await asyncio.to_thread(self._out.write, b"\0" * padding)

    async def finish(self) -> None:
        def close() -> None:
            self._out.write(b"\0" * (2 * BLOCK))
            self._out.close()
            if self._out is not self._raw:
                self._raw.close()
            os.rename(self.part, self.target)
        await asyncio.to_thread(close)

    async def discard(self) -> None:
        def remove() -> None:
            try:
                self._out.close()
                if self._out is not self._raw:
                    self._raw.close()
            finally:
                self.part.unlink(missing_ok=True)
        await asyncio.to_thread(remove)
