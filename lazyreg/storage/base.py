"""The storage interface: what a filesystem and an object store both provide.

    BlobStore     stat, open, stage, put, delete, iterate; another worker's staging;
                  ready, capacity, presign, clean_staging, close
    StagedBlob    a new blob on its way in: hashed and appended, verified, then committed or aborted
    BlobReader    the landed bytes of one blob, stored or still being staged

What every backend promises (`tests/storage/` runs one suite against each):

- A blob is visible under its digest (`stat`, `open`, `iter_digests`) only once its
  bytes hashed to that digest, with the digest's own algorithm, and had the expected
  size; `commit` makes it visible atomically. Nothing else writes under a digest.
- A staged blob's bytes are hashed (`update`) and stored (`append`) by two calls, so
  that a caller can hash in one thread while another writes, and learn that the
  digest matched without waiting for the disk; `write` is both at once. The caller
  gives both calls the same bytes in the same order; `commit` refuses a blob whose
  hashed or stored bytes are not all there.
- `verify` hashes nothing: the hash is kept up to date by `update`, so a blob is
  verified once, and `commit` after `verify` does not check the hash again.
- A reader of a staged blob reads every byte that landed (`landed()`), while the
  blob grows and after it is committed or aborted, until the reader is closed.
  Readers never need a file: `file` is an optimisation a backend may offer
  (the filesystem does, for sendfile), never part of the contract.
- `commit` and `abort` each release everything the staged blob holds, whichever
  way it ends; an abort or a failed verification leaves nothing behind.
- Staging belongs to one worker (`WorkerId`). `clean_staging` removes what dead
  workers left, never a live one's; it is given `live`, which says of some digests
  whether their download lease is held by a live worker (the leases in the
  database), for what a backend cannot tie to a process it can see (an object
  store's multipart uploads). `open_staging` lets a worker follow another worker's staging when the
  backend can share it (a filesystem on this host can; an object store spools on
  its host's disk, so it can too, on that host only; elsewhere followers go through
  the database and the committed blob).
- A backend that cannot be reached raises `lazyreg.errors.StorageUnavailable`
  (an OSError) from any call, never hangs past its timeouts; `ready` raises it
  when the backend cannot serve now (for /readyz).
- `presign` gives a URL that serves the stored blob without us (GET or HEAD,
  Range included), for a backend that has them (an object store); else None.

What the S3 backend changed here (issue 21): `clean_staging` takes `live`;
`ready`, `capacity`, `presign` and `close` are new (they were the filesystem's
path, used by /readyz and the status page, outside this interface); the errors
`StorageUnavailable` and `Misconfigured` are named. Reads, staging and commit
kept their shape: `file` was already optional, and `open_staging` stays
useful (the spool). `lazyreg/fetch/` changed by one line (a 503 passed on).

Methods that may touch the network in some backend are coroutines. `update`,
`append`, `write`, `reset` and `verify` are plain calls, made from a download's own
threads: `update` from one thread, `append` from one thread (maybe another),
`reset` while neither runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import BinaryIO, Protocol, TypeAlias

from lazyreg.worker import WorkerId

# What a reader's `read` returns: bytes, or a view of memory (a download's window,
# `lazyreg.fetch.growing`) that stays valid until its body is asked for the next span.
Chunk: TypeAlias = bytes | memoryview

# Of the digests given, those with a download lease: whether a live worker (any
# process) runs that download now (False: the lease is over, or its owner is dead).
LiveDownloads: TypeAlias = Callable[[list[str]], Awaitable[dict[str, bool]]]


class Misconfigured(Exception):
    """Storage settings that cannot work (a missing bucket, refused credentials, an
    unreachable endpoint): found at start-up, and the message names the setting."""


class DigestMismatch(ValueError):
    """Staged bytes do not hash to (or are not the size of) the expected digest."""


class BlobReader(Protocol):
    @property
    def file(self) -> BinaryIO | None:
        """A file whose bytes at each offset are the blob's (for sendfile), if there is one."""
        ...

    def landed(self) -> int:
        """How many bytes from offset 0 can be read now."""
        ...

    async def read(self, offset: int, count: int) -> Chunk:
        """Up to `count` bytes at `offset` (fewer only past what landed)."""
        ...

    def close(self) -> None: ...


class StagedBlob(Protocol):
    @property
    def digest(self) -> str: ...

    @property
    def size(self) -> int:
        """The size the blob must have."""
        ...

    @property
    def written(self) -> int:
        """Bytes stored so far (`append`), all of them readable by readers."""
        ...

    def update(self, data: Chunk) -> None:
        """Hash the next bytes of the blob."""
        ...

    def append(self, data: Chunk) -> None:
        """Store the next bytes of the blob, after those stored so far."""
        ...

    def write(self, data: Chunk) -> None:
        """`update` and `append`."""
        ...

    def reset(self) -> None:
        """Start over at byte 0; readers keep reading what lands from now on."""
        ...

    def verify(self) -> None:
        """Raise DigestMismatch unless `size` bytes were hashed and hash to the digest.

        Whether they are all stored yet is `commit`'s business.
        """
        ...

    def open_reader(self) -> BlobReader: ...

    async def commit(self) -> str:
        """Verify (unless done), check every byte is stored, and make the blob visible.

        Its location; DigestMismatch when the hash or the size is wrong.
        """
        ...

    async def abort(self) -> None: ...


class BlobStore(Protocol):
    async def stat(self, digest: str) -> int | None:
        """The stored blob's size, None when it is not stored."""
        ...

    async def open(self, digest: str) -> BlobReader | None:
        """A reader of the stored blob, None when it is not stored."""
        ...

    async def stage(self, digest: str, size: int) -> StagedBlob: ...

    async def open_staging(self, worker: WorkerId, digest: str) -> BlobReader | None:
        """A reader of `worker`'s staging of `digest`, if it exists and can be shared."""
        ...

    async def put(self, digest: str, data: bytes) -> str:
        """Store a small blob given whole; its location. Raises DigestMismatch."""
        ...

    async def delete(self, digest: str) -> None: ...

    def iter_digests(self) -> AsyncIterator[str]: ...

    def location(self, digest: str) -> str:
        """What an artifact row records for this blob (`sha256/ab/<hex>`)."""
        ...

    async def clean_staging(self, live: LiveDownloads | None = None) -> int:
        """Remove what dead workers left staged; the number of blobs removed."""
        ...

    async def ready(self) -> None:
        """Raise (OSError) unless the backend can store and serve blobs now."""
        ...

    async def capacity(self) -> tuple[int | None, int | None]:
        """(total, free) bytes of the space blobs go to, None where it has no size."""
        ...

    async def presign(self, digest: str, method: str) -> str | None:
        """A URL serving the stored blob to whoever holds it (`GET` or `HEAD`), or None."""
        ...

    async def close(self) -> None: ...
