"""Reading a layout to import, member by member, refusing what could harm the server.

`members(path)` yields the regular files of a directory, a tar or a gzipped
tar (detected by its first bytes, not its name), each as a `Member` whose
bytes are read in pieces. What is refused, with `BadLayout` naming the entry:

- a name that escapes the layout (absolute, `..`), or one seen twice;
- a symlink or hard link, a device file, a FIFO, anything but files and directories;
- a member whose data ends before the size its header says;
- a gzip stream that unpacks to more than GZIP_RATIO times the archive's size
  (at least GZIP_FLOOR bytes): a gzip bomb is cut off, not unpacked;
- more than MAX_MEMBERS entries.

Everything here blocks (files, decompression): it runs in a worker thread.
"""

from __future__ import annotations

import gzip
import os
import stat
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol, cast

from lazyreg.transfer.layout import GZIP_FLOOR, GZIP_RATIO, MAX_MEMBERS, BadLayout, clean_name

PIECE = 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class Member:
    name: str  # relative to the layout's root, cleaned
    size: int
    stream: IO[bytes]

    def pieces(self) -> Iterator[bytes]:
        """The member's bytes; BadLayout if they end before `size`."""
        left = self.size
        while left:
            try:
                piece = self.stream.read(min(PIECE, left))
            except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
                raise BadLayout(f"{self.name}: ends after fewer than the {self.size} bytes"
                                f" its header says ({exc})") from exc
            if not piece:
                raise BadLayout(f"{self.name}: ends after {self.size - left} of the"
                                f" {self.size} bytes its header says")
            left -= len(piece)
            yield piece

    def read_all(self) -> bytes:
        return b"".join(self.pieces())


class _Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class _Capped:
    """A gzip stream that refuses to unpack past `limit` bytes."""

    def __init__(self, inner: _Readable, limit: int) -> None:
        self.inner = inner
        self.limit = limit
        self.seen = 0

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        self.seen += len(data)
        if self.seen > self.limit:
            raise BadLayout(f"the archive unpacks to more than {self.limit} bytes (over"
                            f" {GZIP_RATIO} times its size): a gzip bomb, refused")
        return data


def members(path: Path) -> Iterator[Member]:
    if path.is_dir():
        yield from _dir_members(path)
    else:
        yield from _tar_members(path)


def _dir_members(root: Path) -> Iterator[Member]:
    count = 0
    todo = [root]
    while todo:
        here = todo.pop()
        with os.scandir(here) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                count += 1
                if count > MAX_MEMBERS:
                    raise BadLayout(f"more than {MAX_MEMBERS} files")
                name = Path(entry.path).relative_to(root).as_posix()
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    raise BadLayout(f"{name}: a symlink")
                if stat.S_ISDIR(st.st_mode):
                    todo.append(Path(entry.path))
                    continue
                if not stat.S_ISREG(st.st_mode):
                    raise BadLayout(f"{name}: a device file or other special file")
                with open(entry.path, "rb") as stream:
                    yield Member(name, st.st_size, stream)


def _tar_members(path: Path) -> Iterator[Member]:
    if not stat.S_ISREG(path.stat().st_mode):
        raise BadLayout(f"{path}: neither a file nor a directory")
    with path.open("rb") as raw:
        head = raw.read(2)
        raw.seek(0)
        stream: _Readable = raw
        if head == GZIP_MAGIC:
            limit = max(GZIP_FLOOR, GZIP_RATIO * os.fstat(raw.fileno()).st_size)
            stream = _Capped(gzip.GzipFile(fileobj=raw, mode="rb"), limit)
        try:
            archive = tarfile.open(fileobj=cast(IO[bytes], stream), mode="r|")  # noqa: SIM115 (`with` below)
        except tarfile.TarError as exc:
            raise BadLayout(f"{path.name}: not a tar archive ({exc})") from None
        seen: set[str] = set()
        count = 0
        with archive:
            while True:
                try:
                    info = archive.next()
                except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
                    raise BadLayout(f"{path.name}: a damaged archive ({exc})") from None
                if info is None:
                    return
                count += 1
                if count > MAX_MEMBERS:
                    raise BadLayout(f"more than {MAX_MEMBERS} entries")
                name = clean_name(info.name)
                if name in seen:
                    raise BadLayout(f"{info.name!r}: an entry repeated")
                seen.add(name)
                if info.issym():
                    raise BadLayout(f"{info.name!r}: a symlink")
                if info.islnk():
                    raise BadLayout(f"{info.name!r}: a hard link")
                if info.isdir():
                    continue
                if not info.isreg():
                    raise BadLayout(f"{info.name!r}: a device file or other special file")
                data = archive.extractfile(info)
                if data is None:  # pragma: no cover - isreg() members have data
                    raise BadLayout(f"{info.name!r}: no data")
                yield Member(name, info.size, data)
