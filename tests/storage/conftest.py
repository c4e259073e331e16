"""Every storage backend, for the one behaviour suite (`test_behaviour.py`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lazyreg.storage.base import BlobStore
from lazyreg.storage.filesystem import FilesystemStore
from tests.storage.memory import MemoryStore

BACKENDS = ["filesystem", "memory"]


def make_store(backend: str, root: Path) -> BlobStore:
    if backend == "filesystem":
        return FilesystemStore(root)
    return MemoryStore()


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return make_store(request.param, tmp_path)


def leftovers(store: BlobStore) -> list[str]:
    """What the backend still holds of blobs staged but not committed."""
    if isinstance(store, FilesystemStore):
        return sorted(str(p) for p in store.staging_root.rglob("*") if p.is_file())
    assert isinstance(store, MemoryStore)
    return [s.digest for s in store.staging.values()]
