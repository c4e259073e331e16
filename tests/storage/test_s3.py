"""What the S3 backend adds to the behaviour suite, against the real S3 server: multipart
uploads from a writer thread, the sweep of dead workers' uploads, presigned URLs, failures."""

from __future__ import annotations

import asyncio
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lazyreg.errors import StorageUnavailable
from lazyreg.storage.base import DigestMismatch, Misconfigured
from lazyreg.storage.layout import digest_of
from lazyreg.storage.s3 import S3Store
from lazyreg.storage.s3client import S3Location, S3Options
from tests.rig import free_port
from tests.s3rig import S3Server
from tests.storage.conftest import S3_PART, make_s3, s3_options

pytestmark = pytest.mark.e2e

BIG = os.urandom(2 * S3_PART + 12345)  # three parts, the last one short
BIG_DIGEST = digest_of(BIG)


async def write_in_thread(staged: object, data: bytes, piece: int = 1 << 20) -> None:
    """As the download's threads do: hash and append off the event loop."""
    def work() -> None:
        for i in range(0, len(data), piece):
            staged.update(data[i:i + piece])  # type: ignore[attr-defined]
            staged.append(data[i:i + piece])  # type: ignore[attr-defined]
    await asyncio.to_thread(work)


async def test_a_big_blob_goes_up_in_parts_and_appears_only_once_verified(
        s3_server: S3Server, tmp_path: Path) -> None:
    store = await make_s3(s3_server, tmp_path)
    try:
        staged = await store.stage(BIG_DIGEST, len(BIG))
        reader = staged.open_reader()
        await write_in_thread(staged, BIG)
        assert s3_server.uploads(store.bucket) == [store.key(BIG_DIGEST)]
        assert s3_server.keys(store.bucket) == []  # nothing under the key before commit
        assert await reader.read(S3_PART - 10, 20) == BIG[S3_PART - 10:S3_PART + 10]
        await staged.commit()
        assert s3_server.keys(store.bucket) == [store.key(BIG_DIGEST)]
        assert s3_server.uploads(store.bucket) == []
        assert await reader.read(len(BIG) - 5, 5) == BIG[-5:]  # the spool, after commit too
        reader.close()
        stored = await store.open(BIG_DIGEST)
        assert stored is not None and stored.landed() == len(BIG)
        assert await stored.read(S3_PART + 3, 1000) == BIG[S3_PART + 3:S3_PART + 1003]
        assert await stored.read(S3_PART + 1003, 10) == BIG[S3_PART + 1003:S3_PART + 1013]
        stored.close()
        assert list((tmp_path / "spool").rglob("*.part")) == []
    finally:
        await store.close()


async def test_a_corrupted_big_blob_leaves_no_object_and_no_upload(
        s3_server: S3Server, tmp_path: Path) -> None:
    store = await make_s3(s3_server, tmp_path)
    try:
        staged = await store.stage(BIG_DIGEST, len(BIG))
        await write_in_thread(staged, BIG[:-1] + b"x")
        with pytest.raises(DigestMismatch):
            await staged.commit()
        assert s3_server.keys(store.bucket) == []
        assert s3_server.uploads(store.bucket) == []
    finally:
        await store.close()


async def test_the_sweep_aborts_uploads_no_live_worker_downloads(
        s3_server: S3Server, tmp_path: Path) -> None:
    store = await make_s3(s3_server, tmp_path)
    try:
        other = os.urandom(len(BIG))
        alive, dead = await store.stage(BIG_DIGEST, len(BIG)), await store.stage(
            digest_of(other), len(other))
        assert len(s3_server.uploads(store.bucket)) == 2
        asked: list[list[str]] = []

        async def live(digests: list[str]) -> dict[str, bool]:
            asked.append(digests)
            return {BIG_DIGEST: True, digest_of(other): False}
        assert await store.clean_staging(live) == 1  # the dead worker's upload, whatever its age
        assert s3_server.uploads(store.bucket) == [store.key(BIG_DIGEST)]
        assert sorted(asked[0]) == sorted([BIG_DIGEST, digest_of(other)])

        async def no_lease(digests: list[str]) -> dict[str, bool]:
            return {}
        assert await store.clean_staging(no_lease) == 0  # unleased (an import), and young
        await write_in_thread(alive, BIG)
        await alive.commit()  # the live one was left alone
        await dead.abort()  # its upload is gone already: abort still works
        assert s3_server.uploads(store.bucket) == []
        assert s3_server.keys(store.bucket) == [store.key(BIG_DIGEST)]
    finally:
        await store.close()


async def test_presigned_urls_serve_get_head_and_range(
        s3_server: S3Server, tmp_path: Path) -> None:
    store = await make_s3(s3_server, tmp_path)
    try:
        data = os.urandom(100_000)
        digest = digest_of(data)
        await store.put(digest, data)
        url = await store.presign(digest, "GET")
        assert url is not None
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.read() == data
        ranged = urllib.request.Request(url, headers={"Range": "bytes=100-199"})
        with urllib.request.urlopen(ranged, timeout=10) as resp:
            assert resp.status == 206 and resp.read() == data[100:200]
        head = await store.presign(digest, "HEAD")
        assert head is not None
        with urllib.request.urlopen(urllib.request.Request(head, method="HEAD"),
                                    timeout=10) as resp:
            assert int(resp.headers["Content-Length"]) == len(data)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url.replace("Signature=", "Signature=0"), timeout=10)
        assert err.value.code == 403
        err.value.close()
    finally:
        await store.close()


@pytest.mark.parametrize("wrong", ["secret", "bucket", "endpoint"])
async def test_bad_settings_are_named_at_start(s3_server: S3Server, tmp_path: Path,
                                               wrong: str) -> None:
    options = s3_options(s3_server)
    bucket = s3_server.new_bucket()
    if wrong == "secret":
        options = S3Options(**{**options.__dict__, "secret_access_key": "wrong"})
    elif wrong == "bucket":
        bucket = "no-such-bucket-" + str(free_port())
    else:
        options = S3Options(**{**options.__dict__,
                               "endpoint_url": f"http://127.0.0.1:{free_port()}"})
    expected = {"secret": "s3_secret_access_key", "bucket": "storage_url: bucket",
                "endpoint": "s3_endpoint_url"}[wrong]
    started = time.monotonic()
    with pytest.raises(Misconfigured, match=expected):
        await S3Store.connect(S3Location(bucket, ""), options, tmp_path)
    assert time.monotonic() - started < 30


async def test_an_unreachable_store_is_storage_unavailable_at_once(tmp_path: Path) -> None:
    options = S3Options(endpoint_url=f"http://127.0.0.1:{free_port()}", region="us-east-1",
                        access_key_id="a", secret_access_key="b", addressing_style="path")
    store = await S3Store.connect(S3Location("bucket", ""), options, tmp_path, check=False)
    try:
        started = time.monotonic()
        with pytest.raises(StorageUnavailable):
            await store.stat(BIG_DIGEST)
        with pytest.raises(StorageUnavailable):
            await store.ready()
        with pytest.raises(StorageUnavailable):
            await store.stage(BIG_DIGEST, len(BIG))  # a multipart upload cannot start
        assert list(tmp_path.rglob("*.part")) == []
        assert time.monotonic() - started < 30
    finally:
        await store.close()
