"""The lazy store: storage first, then a download in flight, then the upstream.

What `BlobStore` is to the rest of the code, `LazyStore` is to the /v2
handlers: they ask it for a blob they found in a repository version and send
the body they get, never knowing whether it came from storage or upstream
(the shape of distribution's `proxyblobstore.go`). It decides:

- `stat`: the stored size, else the size the manifest recorded; never an
  upstream request;
- `open`: a stored blob's body; else a body on the download in flight (in
  this process, or another one's through its lease); else it starts that
  download from the blob's usable sources, best first, keeping the blob
  (`on_demand`) or only relaying it (`streamed`) as the first source's remote
  says;
- errors, as `RegistryError`: no usable source is 404 `BLOB_UNKNOWN` (503
  while every source cools down after a failure); an upstream rate limit is
  429 `TOOMANYREQUESTS`; any other failure of the fetch is 502 `UNAVAILABLE`;
  storage that cannot be read is 503 `UNAVAILABLE`, and so is a blob that could
  not be stored (a full disk) for a reader that came too late to be relayed it.
  Raised by `open` or, for a download that fails later, by the body's spans.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass

from lazyreg.db.sources import BlobSources, usable_sources
from lazyreg.errors import RegistryError, StorageUnavailable
from lazyreg.fetch.body import BlobBody, Span, StoredBody
from lazyreg.fetch.fetcher import Fetcher
from lazyreg.fetch.growing import BytesGone, GrowingBody, Phase
from lazyreg.fetch.source import Source
from lazyreg.services import Services
from lazyreg.upstream.errors import AuthError, TooManyRequests, UpstreamError

ATTEMPTS = 3  # storage / in flight / new download, again when a download ends meanwhile


@dataclass(frozen=True)
class BlobRef:
    """A blob of a repository version: its digest, the size its manifest gives, its row."""

    digest: str
    size: int
    blob_id: int


def as_registry_error(exc: BaseException) -> RegistryError:
    if isinstance(exc, RegistryError):
        return exc
    if isinstance(exc, BytesGone):
        return RegistryError("UNAVAILABLE", f"{exc} (the server could not store it)",
                             status=503)
    if isinstance(exc, TooManyRequests):
        return RegistryError("TOOMANYREQUESTS", f"upstream rate limit: {exc}")
    if isinstance(exc, AuthError):
        return RegistryError("UNAVAILABLE", f"upstream refused our credentials: {exc}",
                             status=502)
    if isinstance(exc, UpstreamError):
        return RegistryError("UNAVAILABLE", f"upstream fetch failed: {exc}", status=502)
    return RegistryError("UNAVAILABLE", f"fetch failed: {type(exc).__name__}: {exc}",
                         status=502)


class FetchedBody:
    """A body on a download in flight, whose failures come out as registry errors."""

    def __init__(self, body: GrowingBody) -> None:
        self._body = body
        self.digest, self.size = body.digest, body.size

    @property
    def joined(self) -> bool:
        """A reader of a download it did not cause (see `GrowingBody.joined`)."""
        return self._body.joined

    async def spans(self, start: int, end: int) -> AsyncGenerator[Span, None]:
        try:
            async for span in self._body.spans(start, end):
                yield span
        except Exception as exc:
            raise as_registry_error(exc) from exc

    def close(self) -> None:
        self._body.close()


class LazyStore:
    def __init__(self, services: Services, fetcher: Fetcher) -> None:
        self.services = services
        self.store = services.store
        self.fetcher = fetcher

    async def stat(self, blob: BlobRef) -> int:
        size = await self.store.stat(blob.digest)
        return blob.size if size is None else size

    async def open(self, blob: BlobRef) -> BlobBody:
        try:
            return await self._open(blob)
        except StorageUnavailable:
            raise  # 503 with Retry-After, rendered with the other errors
        except OSError as exc:  # storage could not be read: the server, not the client
            raise RegistryError("UNAVAILABLE", f"storage: {exc}", status=503) from exc

    async def _open(self, blob: BlobRef) -> BlobBody:
        for _ in range(ATTEMPTS):
            reader = await self.store.open(blob.digest)
            if reader is not None:
                return StoredBody(blob.digest, reader)
            growing = self.fetcher.in_flight(blob.digest)
            if growing is None:
                found = await self.services.db.read(lambda s: usable_sources(s, blob.blob_id))
                chosen = self._sources(blob, found)
                growing = self.fetcher.join(blob.digest, blob.size, chosen,
                                            keep=chosen[0].policy != "streamed", kind="layer")
            body = growing.attach()
            if body is not None:
                return FetchedBody(body)
            # That download ended before we attached: stored, failed, or relayed and gone.
            if growing.phase is Phase.FAILED and growing.error is not None:
                raise as_registry_error(growing.error)
        raise RegistryError("UNAVAILABLE", f"could not join a download of {blob.digest}",
                            status=503)

    def _sources(self, blob: BlobRef, found: BlobSources) -> list[Source]:
        if not found.usable:
            raise RegistryError("BLOB_UNKNOWN",
                                f"blob {blob.digest} is not stored and {found.why}",
                                status=503 if found.cooling else 404)
        return [Source(self.services.upstream_for(row.remote), row.upstream_name,
                       row.source_id, row.remote.name, row.remote.policy)
                for row in found.usable]
