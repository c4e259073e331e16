"""Follow another process's download of a blob, filling a `Growing` for this process's readers.

The bytes are read from a source the caller opens (`open_source`): the other
process's staging when it is a process of this server and the storage backend
can share it (`BlobStore.open_staging`), or, when the lease names another server
of the cluster, that server's internal endpoint (`lazyreg.fetch.peer`). Until
the source exists (the other process may still wait for a download slot), or
when there is none to be had, readers wait. The other process's lease says how
it goes, asked about ten times a second; how much landed is looked at far
more often:

- `verified`: the digest matched; readers get the rest, from the source they
  already read when it has every byte, or else from storage;
- `failed`: its download failed, and readers get that error;
- `lost`: the other process is gone, or gave the download up (an expired lease,
  a dead process, a released lease): the caller claims the download itself,
  and the readers stay attached through the takeover.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from enum import Enum

from lazyreg.fetch.growing import Growing
from lazyreg.storage.base import BlobReader, BlobStore
from lazyreg.upstream.errors import Unavailable
from lazyreg.worker import WorkerId

SourceOpener = Callable[[], Awaitable[BlobReader | None]]

POLL = 0.005  # seconds between looks at the staging's size
CHECK = 0.1  # seconds between looks at the lease


class LeaseStatus(Enum):
    RUNNING = "running"
    VERIFIED = "verified"
    FAILED = "failed"
    LOST = "lost"


async def follow(growing: Growing, store: BlobStore, owner: WorkerId,
                 open_source: SourceOpener,
                 status: Callable[[], Awaitable[LeaseStatus]]) -> bool:
    """Fill `growing` from `owner`'s download: True once verified, False when it was lost."""
    loop = asyncio.get_running_loop()
    following = False  # whether the readers read the owner's bytes
    checked = 0.0
    while True:
        if not following:
            reader = await open_source()
            if reader is not None:
                growing.set_source(reader, reader.landed())
                following = True
        if following:
            growing.advance(growing.landed_of_source())
        if loop.time() - checked >= CHECK:
            checked = loop.time()
            now = await status()
            if now is LeaseStatus.VERIFIED:
                # The lease is finished after the last write: a staging we read is whole;
                # a peer may not have said so yet, and storage has it all.
                if growing.landed_of_source() < growing.size:
                    stored = await store.open(growing.digest)
                    if stored is None:
                        return False  # relayed and gone: nothing left to read
                    growing.set_source(stored, stored.landed())
                growing.advance(growing.landed_of_source())
                growing.verified()
                return True
            if now is LeaseStatus.FAILED:
                raise Unavailable(f"the download of {growing.digest} by another server"
                                  f" process ({owner}) failed")
            if now is LeaseStatus.LOST:
                return False
        await asyncio.sleep(POLL)
