"""What only the filesystem backend does: its layout, staging per worker, sendfile-able readers."""

from __future__ import annotations

import itertools
import mmap
import os
import subprocess
from pathlib import Path

import pytest

from lazyreg.storage.filesystem import FilesystemStore
from lazyreg.storage.layout import digest_of
from lazyreg.worker import WorkerId


def dead_worker() -> WorkerId:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return WorkerId(WorkerId.current().host, proc.pid)


async def test_layout_and_sendfile_readers(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    digest = digest_of(b"hello")
    await store.put(digest, b"hello")
    assert (tmp_path / "sha256" / digest[7:9] / digest[7:]).read_bytes() == b"hello"
    reader = await store.open(digest)
    assert reader is not None
    assert reader.file is not None
    assert os.pread(reader.file.fileno(), 5, 0) == b"hello"
    reader.close()


async def test_another_worker_follows_a_staging_file(tmp_path: Path) -> None:
    leader = FilesystemStore(tmp_path, WorkerId("host-a", 1))
    follower = FilesystemStore(tmp_path, WorkerId("host-b", 2))
    digest = digest_of(b"0123456789")
    assert await follower.open_staging(leader.worker, digest) is None
    staged = await leader.stage(digest, 10)
    staged.write(b"01234")
    reader = await follower.open_staging(leader.worker, digest)
    assert reader is not None
    assert reader.landed() == 5
    staged.write(b"56789")
    assert reader.landed() == 10
    await staged.commit()
    assert await reader.read(0, 10) == b"0123456789"  # the renamed file, same descriptor
    reader.close()
    assert await follower.stat(digest) == 10


async def test_start_up_cleans_staging_of_dead_processes_only(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    leftover = store.staging_root / str(dead_worker())
    leftover.mkdir()
    (leftover / "sha256-abc.part").write_bytes(b"half")
    alive = store.staging_root / str(WorkerId(store.worker.host, os.getppid()))
    alive.mkdir(exist_ok=True)
    (alive / "sha256-def.part").write_bytes(b"in flight")
    elsewhere = store.staging_root / "another-host-12"  # judged by age, and it is fresh
    elsewhere.mkdir()
    (elsewhere / "sha256-fed.part").write_bytes(b"in flight")
    own = await store.stage(digest_of(b"mine"), 4)
    own.write(b"mine")

    assert await store.clean_staging() == 1  # the dead process's half-written file
    assert not leftover.exists()
    assert (alive / "sha256-def.part").exists()
    assert (elsewhere / "sha256-fed.part").exists()
    assert await store.clean_staging(stale_after=-1) == 1  # now old enough
    assert not elsewhere.exists()
    await own.abort()


async def test_a_commit_that_cannot_rename_leaves_nothing_staged(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    digest = digest_of(b"data")
    (tmp_path / "sha256").mkdir()
    (tmp_path / "sha256" / digest[7:9]).write_bytes(b"a file where a directory belongs")
    staged = await store.stage(digest, 4)
    staged.write(b"data")
    with pytest.raises(OSError):
        await staged.commit()
    assert list(store.staging_dir.iterdir()) == []
    assert [d async for d in store.iter_digests()] == []


@pytest.mark.parametrize("direct_io", [True, False])
async def test_whole_pages_go_to_disk_directly_and_readers_see_every_byte(
        tmp_path: Path, direct_io: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[tuple[int, int, int]] = []  # (descriptor, offset, length) of each pwrite
    real_pwrite = os.pwrite

    def pwrite(fd: int, data: memoryview, offset: int) -> int:
        writes.append((fd, offset, len(data)))
        return real_pwrite(fd, data, offset)
    monkeypatch.setattr(os, "pwrite", pwrite)
    store = FilesystemStore(tmp_path, direct_io=direct_io)
    data = os.urandom(3 * 1024 * 1024 + 1234)
    digest = digest_of(data)
    block = mmap.mmap(-1, len(data) + 4096)  # page-aligned, as the fetcher's blocks are
    block[:len(data)] = data
    view = memoryview(block)
    staged = await store.stage(digest, len(data))
    assert (staged._direct is not None) == direct_io  # this filesystem has O_DIRECT
    reader = staged.open_reader()
    # Aligned pages, then an unaligned piece (page cache), then pages again from an
    # unaligned offset, then read-only bytes (no address to check), then the tail.
    cuts = [0, 1024 * 1024, 1024 * 1024 + 100, 2 * 1024 * 1024 + 8192, 3 * 1024 * 1024,
            len(data)]
    for lo, hi in itertools.pairwise(cuts):
        piece = bytes(view[lo:hi]) if lo == 2 * 1024 * 1024 + 8192 else view[lo:hi]
        staged.write(piece)
        assert reader.landed() == hi
        assert await reader.read(0, hi) == data[:hi]
    direct = staged._direct
    await staged.commit()
    assert (tmp_path / "sha256" / digest[7:9] / digest[7:]).read_bytes() == data
    reader.close()
    if direct_io:
        # Whole pages went directly, also after an unaligned piece (its page through
        # the page cache first); the read-only piece and the short tail did not.
        assert [(o, n) for fd, o, n in writes if fd == direct] == [
            (0, 1024 * 1024), (1024 * 1024 + 4096, 1024 * 1024 + 4096)]
