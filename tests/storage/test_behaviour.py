"""The storage interface's promises (`lazyreg.storage.base`), run against every backend."""

from __future__ import annotations

import hashlib
import os

import pytest

from lazyreg.storage.base import BlobReader, BlobStore, DigestMismatch
from lazyreg.storage.layout import UnsupportedDigest, digest_of
from tests.storage.conftest import leftovers

DATA = os.urandom(300_000)
DIGEST = digest_of(DATA)


async def read_all(reader: BlobReader, chunk: int = 65536) -> bytes:
    out = bytearray()
    while len(out) < reader.landed():
        piece = await reader.read(len(out), chunk)
        assert piece
        out += piece
    return bytes(out)


async def listed(store: BlobStore) -> list[str]:
    return [d async for d in store.iter_digests()]


async def test_a_staged_blob_is_invisible_until_committed(store: BlobStore) -> None:
    staged = await store.stage(DIGEST, len(DATA))
    for i in range(0, len(DATA), 100_000):
        staged.write(DATA[i:i + 100_000])
    assert staged.written == len(DATA)
    assert await store.stat(DIGEST) is None
    assert await store.open(DIGEST) is None
    assert await listed(store) == []

    assert await staged.commit() == f"sha256/{DIGEST[7:9]}/{DIGEST[7:]}"
    assert await store.stat(DIGEST) == len(DATA)
    assert await listed(store) == [DIGEST]
    reader = await store.open(DIGEST)
    assert reader is not None
    assert reader.landed() == len(DATA)
    assert await reader.read(1000, 10) == DATA[1000:1010]
    assert await read_all(reader) == DATA
    reader.close()
    assert leftovers(store) == []


@pytest.mark.parametrize("wrong", ["digest", "size"])
async def test_a_mismatch_commits_nothing_and_leaves_nothing(store: BlobStore,
                                                             wrong: str) -> None:
    expected = digest_of(DATA + b"x") if wrong == "digest" else DIGEST
    size = len(DATA) + (1 if wrong == "size" else 0)
    staged = await store.stage(expected, size)
    staged.write(DATA)
    with pytest.raises(DigestMismatch):
        staged.verify()
    with pytest.raises(DigestMismatch):
        await staged.commit()
    assert await store.stat(expected) is None
    assert await listed(store) == []
    assert leftovers(store) == []


async def test_readers_follow_a_staged_blob_and_outlive_it(store: BlobStore) -> None:
    staged = await store.stage(DIGEST, len(DATA))
    reader = staged.open_reader()
    assert reader.landed() == 0
    staged.write(DATA[:1000])
    assert reader.landed() == 1000
    assert await reader.read(0, 5000) == DATA[:1000]  # no more than landed
    staged.write(DATA[1000:])
    staged.verify()
    await staged.commit()
    assert await read_all(reader) == DATA  # after the commit, too

    other = digest_of(b"relayed")
    relayed = await store.stage(other, 7)
    second = relayed.open_reader()
    relayed.write(b"relayed")
    await relayed.abort()
    assert await second.read(0, 7) == b"relayed"  # after the abort, too
    assert await store.stat(other) is None
    reader.close()
    second.close()
    assert leftovers(store) == []


async def test_reset_starts_over_for_readers_too(store: BlobStore) -> None:
    staged = await store.stage(DIGEST, len(DATA))
    reader = staged.open_reader()
    staged.write(b"wrong bytes from a first source")
    staged.reset()
    assert staged.written == 0
    staged.write(DATA)
    assert await read_all(reader) == DATA
    await staged.commit()
    reader.close()
    assert await store.stat(DIGEST) == len(DATA)


async def test_put_delete_and_listing(store: BlobStore) -> None:
    blobs = {digest_of(d): d for d in (b"a", b"bb", b"", DATA)}
    for digest, data in blobs.items():
        assert await store.put(digest, data) == store.location(digest)
    assert await listed(store) == sorted(blobs)
    assert await store.stat(digest_of(b"")) == 0
    with pytest.raises(DigestMismatch):
        await store.put(digest_of(b"c"), b"not c")
    assert await store.stat(digest_of(b"c")) is None
    await store.delete(digest_of(b"a"))
    await store.delete(digest_of(b"a"))  # deleting what is gone is fine
    assert await store.open(digest_of(b"a")) is None
    assert await listed(store) == sorted(set(blobs) - {digest_of(b"a")})
    assert leftovers(store) == []


async def test_sha512_blobs_are_hashed_and_laid_out_by_their_algorithm(store: BlobStore) -> None:
    digest = "sha512:" + hashlib.sha512(DATA).hexdigest()
    staged = await store.stage(digest, len(DATA))
    staged.write(DATA)
    assert await staged.commit() == f"sha512/{digest[7:9]}/{digest[7:]}"
    reader = await store.open(digest)
    assert reader is not None
    assert await read_all(reader) == DATA
    reader.close()
    assert await listed(store) == [digest]

    wrong = "sha512:" + hashlib.sha512(b"other").hexdigest()
    with pytest.raises(DigestMismatch):
        await store.put(wrong, DATA)


@pytest.mark.parametrize("digest", [
    "sha256:" + "a" * 63, "sha256:" + "A" * 64, "md5:" + "a" * 32, "sha512:" + "a" * 64,
    "sha256:../../" + "a" * 58, "a" * 64,
])
async def test_unsupported_digests_are_refused(store: BlobStore, digest: str) -> None:
    with pytest.raises(UnsupportedDigest):
        await store.stat(digest)
    with pytest.raises(UnsupportedDigest):
        await store.stage(digest, 1)
    assert leftovers(store) == []


async def test_hashing_and_storing_are_two_calls_and_commit_needs_both(store: BlobStore) -> None:
    staged = await store.stage(DIGEST, len(DATA))
    reader = staged.open_reader()
    staged.update(DATA)  # hashed, as a hasher thread would, ahead of the disk
    staged.verify()  # the digest is known to match: nothing stored yet
    assert staged.written == 0 and reader.landed() == 0
    staged.append(DATA[:1000])
    with pytest.raises(DigestMismatch, match="1000 of"):
        await staged.commit()  # not every byte is stored
    assert await store.stat(DIGEST) is None
    assert leftovers(store) == []
    reader.close()

    staged = await store.stage(DIGEST, len(DATA))
    staged.update(DATA[:-1] + b"x")
    staged.append(DATA)
    with pytest.raises(DigestMismatch):
        await staged.commit()  # what was hashed decides, whatever was stored
    assert await store.stat(DIGEST) is None
    assert leftovers(store) == []
