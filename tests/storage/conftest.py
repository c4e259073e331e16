"""Every storage backend, for the one behaviour suite (`test_behaviour.py`).

`s3` runs against the real S3 server (tests/s3rig.py), each test in a bucket of
its own; it is marked e2e (a server outside the test process), so `make unit`
leaves it out and `make test` runs it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lazyreg.storage.base import BlobStore
from lazyreg.storage.filesystem import FilesystemStore
from lazyreg.storage.s3 import S3Store
from lazyreg.storage.s3client import S3Location, S3Options
from tests.s3rig import ACCESS_KEY, REGION, SECRET_KEY, S3Server
from tests.storage.memory import MemoryStore

BACKENDS = ["filesystem", "memory"]  # in the test process (the fetcher's tests use these)
ALL_BACKENDS = [*BACKENDS, pytest.param("s3", marks=pytest.mark.e2e)]
S3_PART = 5 * 1024 * 1024  # the smallest part S3 takes: a few parts for a small test blob
_SERVERS: dict[str, S3Server] = {}  # bucket -> its server, for `leftovers`


def make_store(backend: str, root: Path) -> BlobStore:
    if backend == "filesystem":
        return FilesystemStore(root)
    return MemoryStore()


def s3_options(server: S3Server) -> S3Options:
    return S3Options(endpoint_url=server.endpoint, region=REGION, access_key_id=ACCESS_KEY,
                     secret_access_key=SECRET_KEY, addressing_style="path")


async def make_s3(server: S3Server, root: Path, prefix: str = "p/") -> S3Store:
    bucket = server.new_bucket()
    _SERVERS[bucket] = server
    return await S3Store.connect(S3Location(bucket, prefix), s3_options(server),
                                 root / "spool", part_size=S3_PART)


@pytest.fixture(params=ALL_BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    if request.param != "s3":
        yield make_store(request.param, tmp_path)
    else:
        s3 = await make_s3(request.getfixturevalue("s3_server"), tmp_path)
        yield s3
        await s3.close()


def leftovers(store: BlobStore) -> list[str]:
    """What the backend still holds of blobs staged but not committed."""
    if isinstance(store, FilesystemStore):
        return sorted(str(p) for p in store.staging_root.rglob("*") if p.is_file())
    if isinstance(store, S3Store):
        # Multipart uploads in progress, and spool files.
        return _SERVERS[store.bucket].uploads(store.bucket) + leftovers(store.spool)
    assert isinstance(store, MemoryStore)
    return [s.digest for s in store.staging.values()]
