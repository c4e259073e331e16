from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from lazyreg.oci.digest import sha256_digest
from lazyreg.storage import DigestMismatch, FilesystemStore


def test_commit_only_after_digest_and_size_match(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    data = b"hello" * 1000
    digest = sha256_digest(data)
    staged = store.stage()
    staged.write(data[:10])
    staged.write(data[10:])
    assert not store.exists(digest)
    location = store.commit(staged, digest, len(data))
    assert location == f"sha256/{digest[7:9]}/{digest[7:]}"
    assert store.local_path(digest).read_bytes() == data
    assert list(store.iter_digests()) == [digest]
    assert list(store.staging_dir.iterdir()) == []


@pytest.mark.parametrize("wrong", ["digest", "size"])
def test_mismatch_leaves_nothing_behind(tmp_path: Path, wrong: str) -> None:
    store = FilesystemStore(tmp_path)
    data = b"abc"
    digest = sha256_digest(b"abd") if wrong == "digest" else sha256_digest(data)
    staged = store.stage()
    staged.write(data)
    with pytest.raises(DigestMismatch):
        store.commit(staged, digest, len(data) + (1 if wrong == "size" else 0))
    assert list(store.iter_digests()) == []
    assert list(store.staging_dir.iterdir()) == []


def test_start_up_cleans_staging_of_dead_processes_only(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    store = FilesystemStore(tmp_path)
    leftover = store.staging_root / f"{store.host}-{dead.pid}"
    leftover.mkdir()
    (leftover / "blob-1").write_bytes(b"half")
    alive = store.staging_root / f"{store.host}-{os.getppid()}"
    alive.mkdir(exist_ok=True)
    (alive / "blob-2").write_bytes(b"in flight")
    own = store.stage()
    own.write(b"mine")

    assert store.clean_staging() == 1  # the dead process's half-written file
    assert not leftover.exists()
    assert (alive / "blob-2").exists()
    assert own.path.exists()
    own.discard()


def test_reset_keeps_readers_descriptor(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    staged = store.stage()
    fd = os.open(staged.path, os.O_RDONLY)
    staged.write(b"wrong")
    staged.reset()
    staged.write(b"right")
    assert os.pread(fd, 10, 0) == b"right"
    os.close(fd)
    assert staged.hexdigest() == sha256_digest(b"right")[7:]
    staged.discard()
