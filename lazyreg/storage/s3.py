"""S3 backend: blobs as objects at `<prefix><algorithm>/<hex[:2]>/<hex>` in one bucket.

Any S3-compatible store (AWS S3, MinIO, Ceph RGW, Swift's s3api) through
aiobotocore. It uses only what they all have: single PUTs, multipart uploads
(create, part, complete, abort, list), HEAD, ranged GET, single DELETE,
ListObjectsV2 and presigned URLs; no batch delete, no conditional PUT, no copy.

- A blob appears under its digest only once verified: a staged blob goes up
  as a multipart upload to its final key, part by part while it downloads
  (PART_SIZE, PARTS_IN_FLIGHT parts uploading at a time, each read back from
  the spool), and the upload is completed only after its digest and size
  matched; until then S3 shows nothing under the key. A blob of one part (and
  `put`) is one PUT after the check. Any failure aborts the upload.
- Readers of a staged blob read a spool: the same bytes written to a file
  in this server's data directory (the filesystem backend's staging, O_DIRECT
  and all), because the parts of an upload in progress cannot be read back
  from S3. So readers behind the download's memory window, and other
  processes of this host (`open_staging`), read it as on the filesystem, with
  sendfile; the spool is removed at commit or abort (readers holding it keep
  reading). Processes on other hosts follow through the database and the
  committed object.
- Dead workers: `clean_staging` removes the spools of dead processes of this
  host, and aborts the multipart uploads under the prefix whose blob's download
  lease in the database (`live`) is over or held by a dead worker, whatever the
  upload's age; a live lead holds the lease from before it creates the upload
  until after it completes or aborts it. An upload with no lease at all (an
  import stages without one) is left UNLEASED_GRACE seconds.
- Stored blobs are read with ranged GETs, one open GET per reading position
  (a client reading from offset N and on costs one GET); with
  `storage_redirect`, clients get a presigned URL instead (`presign`).
- Every failure to reach the store is `StorageUnavailable` (`s3client.calling`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import os
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from lazyreg.errors import StorageUnavailable
from lazyreg.storage.base import Chunk, DigestMismatch, LiveDownloads
from lazyreg.storage.filesystem import FileReader, FilesystemStaged, FilesystemStore
from lazyreg.storage.layout import ALGORITHMS, blob_key, new_hash, split_digest
from lazyreg.storage.s3client import (
    S3Location,
    S3Options,
    calling,
    check_bucket,
    is_missing,
    new_client,
)
from lazyreg.worker import WorkerId

log = logging.getLogger(__name__)

PART_SIZE = 8 * 1024 * 1024  # bytes of an upload part (S3 wants >= 5 MiB but the last)
MAX_PARTS = 10_000  # S3's limit of parts in one upload: bigger blobs get bigger parts
PARTS_IN_FLIGHT = 3  # parts of one blob uploading at a time (each in memory meanwhile)
READ_STREAMS = 4  # open GETs of one stored blob's reader (one per reading position)
READ_AHEAD = 2 * 1024 * 1024  # bytes an open GET reads ahead of its reader, at most
READ_CHUNK = 256 * 1024  # bytes asked of the GET's body at a time
PRESIGN_TTL = 600  # seconds a presigned URL is valid
# An upload of a blob with no download lease at all (an import stages without one)
# is aborted only this many seconds after it began: longer than any import of a blob.
UNLEASED_GRACE = 6 * 3600.0
MAX_LISTED = 1_000_000  # keys (or uploads) one listing goes through, at most
PAGE = 1000


class _Stream:
    """One open GET of a stored blob, read ahead of its reader by up to READ_AHEAD bytes,
    so that the store's bytes keep coming while the last ones go out to the client."""

    def __init__(self, body: Any, key: str) -> None:
        self._body, self._key = body, key
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._ended = False
        self._error: BaseException | None = None
        self._more = asyncio.Event()
        self._room = asyncio.Event()
        self._task = asyncio.create_task(self._fill())

    async def _fill(self) -> None:
        try:
            with calling(f"GET {self._key}"):
                while True:
                    while self._buffered >= READ_AHEAD:
                        self._room.clear()
                        await self._room.wait()
                    chunk = await self._body.read(READ_CHUNK)
                    if not chunk:
                        self._ended = True
                        return
                    self._chunks.append(chunk)
                    self._buffered += len(chunk)
                    self._more.set()
        except Exception as exc:  # the reader raises it
            self._error = exc
        finally:
            self._more.set()

    async def take(self, count: int) -> bytes:
        parts: list[bytes] = []
        need = count
        while need:
            if not self._chunks:
                if self._error is not None:
                    raise self._error
                if self._ended:
                    raise StorageUnavailable(f"object store: {self._key} ended early")
                self._more.clear()
                await self._more.wait()
                continue
            chunk = self._chunks[0]
            if len(chunk) <= need:
                parts.append(self._chunks.popleft())
            else:
                parts.append(chunk[:need])
                self._chunks[0] = chunk[need:]
            taken = len(parts[-1])
            need -= taken
            self._buffered -= taken
            self._room.set()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        self._task.cancel()
        self._body.close()


class S3Reader:
    """A stored blob: ranged GETs from the position asked, kept open for the next read."""

    def __init__(self, store: S3Store, key: str, size: int) -> None:
        self._store, self._key, self._size = store, key, size
        self._streams: OrderedDict[int, _Stream] = OrderedDict()  # next position -> GET
        self._closed = False

    @property
    def file(self) -> None:
        return None

    def landed(self) -> int:
        return self._size

    async def read(self, offset: int, count: int) -> Chunk:
        count = min(count, self._size - offset)
        if count <= 0:
            return b""
        stream = self._streams.pop(offset, None)
        if stream is None:
            while len(self._streams) >= READ_STREAMS:
                self._streams.popitem(last=False)[1].close()
            body = await self._store._get(self._key, offset, self._size - 1)
            stream = _Stream(body, self._key)
        try:
            data = await stream.take(count)
        except BaseException:
            stream.close()
            raise
        if self._closed:
            stream.close()
        else:
            self._streams[offset + count] = stream
        return data

    def close(self) -> None:
        self._closed = True
        while self._streams:
            self._streams.popitem()[1].close()


class S3Staged:
    """A blob on its way up: spooled for readers, uploaded in parts, completed once verified.

    `update` and `append` are the spool's (the hash, and the file readers read).
    Each time the spool holds a whole part more, `append` schedules that part's
    upload on the event loop; the upload reads the part back from the spool
    when its turn comes (PARTS_IN_FLIGHT at a time), so `append` never waits for
    the store: clients get the bytes at the disk's pace, whatever the store's,
    memory holds at most PARTS_IN_FLIGHT parts, and `commit` waits for the rest.
    """

    def __init__(self, store: S3Store, spool: FilesystemStaged, key: str,
                 upload_id: str | None, part_size: int) -> None:
        self._store, self._spool, self._key = store, spool, key
        self._upload_id = upload_id
        self._part_size = part_size
        self._loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(PARTS_IN_FLIGHT)
        self._reader = spool.open_reader()  # what the uploads read the parts from
        self._sent = 0  # bytes of the spool handed to part uploads
        self._next_part = 1
        self._first_part = 1  # of the current attempt (`reset` starts a new series)
        self._uploads: list[concurrent.futures.Future[dict[str, Any]]] = []
        self._closed = False

    @property
    def digest(self) -> str:
        return self._spool.digest

    @property
    def size(self) -> int:
        return self._spool.size

    @property
    def written(self) -> int:
        return self._spool.written

    def update(self, data: Chunk) -> None:
        self._spool.update(data)

    def append(self, data: Chunk) -> None:
        self._check_uploads()
        self._spool.append(data)
        if self._upload_id is None:
            return
        written = self._spool.written
        while written - self._sent >= self._part_size or (
                written >= self._spool.size and self._sent < written):
            end = min(self._sent + self._part_size, written)
            number = self._next_part
            self._next_part += 1
            self._uploads.append(asyncio.run_coroutine_threadsafe(
                self._upload_part(number, self._sent, end), self._loop))
            self._sent = end

    def _current(self) -> list[concurrent.futures.Future[dict[str, Any]]]:
        return self._uploads[self._first_part - 1:]

    def _check_uploads(self) -> None:
        """Raise the failure of a part upload: the download relays from then on."""
        for future in self._current():
            if future.done() and not future.cancelled() and future.exception() is not None:
                error = future.exception()
                assert error is not None
                raise error if isinstance(error, OSError) else StorageUnavailable(str(error))

    def _pread(self, offset: int, count: int) -> bytes:
        file = self._reader.file
        data = os.pread(file.fileno(), count, offset)
        if len(data) != count:
            raise OSError(f"spool of {self.digest}: {len(data)} of {count} bytes at {offset}")
        return data

    async def _upload_part(self, number: int, start: int, end: int) -> dict[str, Any]:
        async with self._slots:
            data = await asyncio.to_thread(self._pread, start, end - start)
            with calling(f"upload part {number} of {self._key}"):
                answer = await self._store.client.upload_part(
                    Bucket=self._store.bucket, Key=self._key, UploadId=self._upload_id,
                    PartNumber=number, Body=data)
        return {"PartNumber": number, "ETag": answer["ETag"]}

    def write(self, data: Chunk) -> None:
        self.update(data)
        self.append(data)

    def reset(self) -> None:
        self._spool.reset()
        self._sent = 0
        # Parts of the first attempt may still be under way: the new ones get new numbers.
        self._first_part = self._next_part

    def verify(self) -> None:
        self._spool.verify()

    def open_reader(self) -> FileReader:
        return self._spool.open_reader()

    async def commit(self) -> str:
        try:
            self.verify()
            if self.written != self.size:
                raise DigestMismatch(f"{self.digest}: {self.written} of {self.size} bytes"
                                     " stored")
            store = self._store
            if self._upload_id is None:
                data = await asyncio.to_thread(self._pread, 0, self.size)
                with calling(f"PUT {self._key}"):
                    await store.client.put_object(Bucket=store.bucket, Key=self._key,
                                                  Body=data)
            else:
                parts = [await asyncio.wrap_future(f) for f in self._current()]
                with calling(f"complete {self._key}"):
                    await store.client.complete_multipart_upload(
                        Bucket=store.bucket, Key=self._key, UploadId=self._upload_id,
                        MultipartUpload={"Parts": parts})
                self._upload_id = None
        except BaseException:
            await self.abort()
            raise
        self._closed = True
        self._reader.close()
        await self._spool.abort()  # readers holding the spool keep reading it
        return blob_key(self.digest)

    async def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        for future in self._uploads:
            future.cancel()
        if self._uploads:
            await asyncio.wait([asyncio.wrap_future(f) for f in self._uploads])
        if self._upload_id is not None:
            try:
                await self._store.abort_upload(self._key, self._upload_id)
            except StorageUnavailable as exc:  # the sweep aborts it once our lease is over
                log.warning("could not abort the upload of %s: %s", self.digest, exc)
        self._reader.close()
        await self._spool.abort()


class S3Store:
    def __init__(self, client: Any, location: S3Location, spool_root: Path,
                 worker: WorkerId | None = None, *, part_size: int = PART_SIZE,
                 options: S3Options | None = None) -> None:
        self.client = client
        self.where = location
        self.bucket, self.prefix = location.bucket, location.prefix
        self.options = options or S3Options()
        self.part_size = part_size
        # The spool: staged bytes for readers, on this host's disk (see the module doc).
        self.spool = FilesystemStore(spool_root, worker)
        self._exit: contextlib.AsyncExitStack | None = None

    @classmethod
    async def connect(cls, location: S3Location, options: S3Options, spool_root: Path,
                      worker: WorkerId | None = None, *, check: bool = True,
                      part_size: int = PART_SIZE) -> S3Store:
        """A store with its own client; `check`: raise `Misconfigured` unless the bucket
        answers (a bad setting, named, at start-up rather than at every pull)."""
        exit_stack = contextlib.AsyncExitStack()
        client = await exit_stack.enter_async_context(new_client(options))
        try:
            if check:
                await check_bucket(client, location, options)
        except BaseException:
            await exit_stack.aclose()
            raise
        store = cls(client, location, spool_root, worker, part_size=part_size,
                    options=options)
        store._exit = exit_stack
        return store

    async def close(self) -> None:
        if self._exit is not None:
            await self._exit.aclose()
            self._exit = None

    def key(self, digest: str) -> str:
        return self.prefix + blob_key(digest)

    def _digest_of(self, key: str) -> str | None:
        """The digest whose blob lives at `key`, None for any other key."""
        if not key.startswith(self.prefix):
            return None
        parts = key[len(self.prefix):].split("/")
        if len(parts) != 3 or ALGORITHMS.get(parts[0]) != len(parts[2]):
            return None
        digest = f"{parts[0]}:{parts[2]}"
        try:
            split_digest(digest)
        except ValueError:
            return None
        return digest if parts[1] == parts[2][:2] else None

    def __str__(self) -> str:
        return str(self.where)

    # ------------------------------------------------------------ reads

    async def _head(self, digest: str) -> int | None:
        key = self.key(digest)
        try:
            with calling(f"HEAD {key}"):
                answer = await self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if is_missing(exc):
                return None
            raise
        return int(answer["ContentLength"])

    async def _get(self, key: str, first: int, last: int) -> Any:
        try:
            with calling(f"GET {key}"):
                answer = await self.client.get_object(Bucket=self.bucket, Key=key,
                                                      Range=f"bytes={first}-{last}")
        except ClientError as exc:  # deleted since it was opened
            raise OSError(f"{key} is gone from the object store") from exc
        return answer["Body"]

    async def stat(self, digest: str) -> int | None:
        return await self._head(digest)

    async def open(self, digest: str) -> S3Reader | None:
        size = await self._head(digest)
        return None if size is None else S3Reader(self, self.key(digest), size)

    async def presign(self, digest: str, method: str) -> str | None:
        """A URL that serves the stored blob to anyone holding it (GET or HEAD, Range too)."""
        operation = "head_object" if method == "HEAD" else "get_object"
        with calling("presign"):
            url: str = await self.client.generate_presigned_url(
                operation, Params={"Bucket": self.bucket, "Key": self.key(digest)},
                ExpiresIn=PRESIGN_TTL)
        return url

    # ------------------------------------------------------------ writes

    async def stage(self, digest: str, size: int) -> S3Staged:
        key = self.key(digest)
        part_size = max(self.part_size, math.ceil(size / MAX_PARTS))
        spool = await self.spool.stage(digest, size)
        upload_id = None
        if size > part_size:
            try:
                with calling(f"create upload {key}"):
                    answer = await self.client.create_multipart_upload(Bucket=self.bucket,
                                                                       Key=key)
            except BaseException:
                await spool.abort()
                raise
            upload_id = answer["UploadId"]
        return S3Staged(self, spool, key, upload_id, part_size)

    async def open_staging(self, worker: WorkerId, digest: str) -> FileReader | None:
        # Another process of this host spools where we can read it.
        return await self.spool.open_staging(worker, digest)

    async def put(self, digest: str, data: bytes) -> str:
        algorithm, hex_ = split_digest(digest)
        actual = new_hash(digest)
        actual.update(data)
        if actual.hexdigest() != hex_:
            raise DigestMismatch(f"expected {digest}, got {algorithm}:{actual.hexdigest()}")
        key = self.key(digest)
        with calling(f"PUT {key}"):
            await self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        return blob_key(digest)

    async def delete(self, digest: str) -> None:
        key = self.key(digest)
        try:
            with calling(f"DELETE {key}"):
                await self.client.delete_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if not is_missing(exc):
                raise

    async def iter_digests(self) -> AsyncIterator[str]:
        for algorithm in ALGORITHMS:
            token: str | None = None
            seen = 0
            while seen < MAX_LISTED:
                args: dict[str, Any] = {"Bucket": self.bucket, "MaxKeys": PAGE,
                                        "Prefix": f"{self.prefix}{algorithm}/"}
                if token:
                    args["ContinuationToken"] = token
                with calling("list objects"):
                    page = await self.client.list_objects_v2(**args)
                for item in page.get("Contents", []):
                    seen += 1
                    digest = self._digest_of(item["Key"])
                    if digest is not None:
                        yield digest
                token = page.get("NextContinuationToken")
                if not page.get("IsTruncated") or not token:
                    break

    def location(self, digest: str) -> str:
        return blob_key(digest)

    # ------------------------------------------------------------ upkeep

    async def abort_upload(self, key: str, upload_id: str) -> None:
        try:
            with calling(f"abort upload {key}"):
                await self.client.abort_multipart_upload(Bucket=self.bucket, Key=key,
                                                         UploadId=upload_id)
        except ClientError as exc:
            if not is_missing(exc):
                raise

    async def uploads(self) -> list[tuple[str, str, float]]:
        """(key, upload id, age in seconds) of every multipart upload under the prefix."""
        found: list[tuple[str, str, float]] = []
        now = time.time()
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix,
                                "MaxUploads": PAGE}
        while len(found) < MAX_LISTED:
            with calling("list uploads"):
                page = await self.client.list_multipart_uploads(**args)
            found += [(u["Key"], u["UploadId"], now - u["Initiated"].timestamp())
                      for u in page.get("Uploads", [])]
            if not page.get("IsTruncated"):
                break
            args["KeyMarker"] = page.get("NextKeyMarker", "")
            args["UploadIdMarker"] = page.get("NextUploadIdMarker", "")
        return found

    async def clean_staging(self, live: LiveDownloads | None = None) -> int:
        """Remove dead processes' spools, and abort the uploads of blobs no live worker
        downloads (`live`; without it, only the spools); the number of both."""
        removed = await self.spool.clean_staging()
        if live is None:
            return removed
        uploads = [(key, upload, age, self._digest_of(key))
                   for key, upload, age in await self.uploads()]
        ours = sorted({digest for *_, digest in uploads if digest is not None})
        leased = await live(ours) if ours else {}
        for key, upload, age, digest in uploads:
            if digest is None:
                continue  # not a blob's
            if leased.get(digest, age < UNLEASED_GRACE):
                continue  # a live download's, or one that takes no lease (an import), young
            await self.abort_upload(key, upload)
            log.info("aborted the upload of %s left by a dead worker", digest)
            removed += 1
        return removed

    async def ready(self) -> None:
        with calling("HEAD bucket"):
            await self.client.head_bucket(Bucket=self.bucket)

    async def capacity(self) -> tuple[int | None, int | None]:
        return None, None  # an object store has no size to report
