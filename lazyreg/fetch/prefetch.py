"""Prefetch: the first GET of an image manifest starts its layers' lazy downloads.

A remote's `prefetch` setting (`none`, `platform`, `all`) decides, through the
sources of the blobs: with `platform`, the first client GET of an image
manifest (never a HEAD) starts, in the background and after that answer is on
its way, the downloads of its layers that are neither stored nor in flight, so
that the client's own blob GETs join downloads already running; `all` does the
same for every child of an index when the index is fetched.

The downloads are the fetcher's ordinary ones (`Fetcher.fetch`: single
flight across processes, verified, stored), at most the remote's
`download_concurrency` at once for one manifest. A `streamed` remote is never
prefetched (nothing would be kept). Bounded: a manifest digest is
prefetched once per RECENT manifests seen, at most MAX_RUNNING prefetches run
at once (more are dropped), and one manifest starts at most MAX_LAYERS layers.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from lazyreg.db.models import Artifact, Blob, Manifest, ManifestBlob, ManifestChild
from lazyreg.db.sources import SourceRow, usable_sources
from lazyreg.fetch.fetcher import Fetcher
from lazyreg.fetch.source import Source
from lazyreg.oci import mediatypes as mt
from lazyreg.services import Services

log = logging.getLogger(__name__)

RECENT = 10_000  # manifest digests remembered as prefetched
MAX_RUNNING = 64  # prefetches at once in this process
MAX_LAYERS = 256  # layers one manifest (or index, with `all`) starts
MAX_CHILDREN = 64  # children of an index followed with `all`


@dataclass(frozen=True)
class _Layer:
    digest: str
    size: int
    sources: list[SourceRow]  # usable, best first


class Prefetcher:
    def __init__(self, services: Services, fetcher: Fetcher) -> None:
        self.services = services
        self.fetcher = fetcher
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._running: set[asyncio.Task[None]] = set()

    def manifest_got(self, digest: str, media_type: str) -> None:
        """A client GET a manifest: start its layers' downloads if its remote says so."""
        if digest in self._seen:
            return
        self._seen[digest] = None
        if len(self._seen) > RECENT:
            self._seen.popitem(last=False)
        if len(self._running) >= MAX_RUNNING:
            return
        task = asyncio.create_task(self._prefetch(digest, mt.is_list(media_type)))
        self._running.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("prefetch failed: %s", task.exception())

    async def close(self) -> None:
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    async def _prefetch(self, digest: str, is_list: bool) -> None:
        layers = await self.services.db.read(lambda s: self._layers(s, digest, is_list))
        if not layers:
            return
        slots = asyncio.Semaphore(max(1, layers[0].sources[0].remote.download_concurrency))

        async def one(layer: _Layer) -> None:
            sources = [Source(self.services.upstream_for(row.remote), row.upstream_name,
                              row.source_id, row.remote.name, row.remote.policy)
                       for row in layer.sources]
            async with slots:
                try:
                    await self.fetcher.fetch(layer.digest, layer.size, sources, kind="layer")
                except Exception as exc:  # the client's own GET will say why
                    log.info("prefetch of %s failed: %s", layer.digest, exc)
        await asyncio.gather(*(one(layer) for layer in layers))

    def _layers(self, session: Session, digest: str, is_list: bool) -> list[_Layer]:
        """The layers to start: not stored, with a usable source whose remote prefetches."""
        manifest_id = session.scalar(select(Manifest.id).where(Manifest.digest == digest))
        if manifest_id is None:
            return []
        ids = [manifest_id]
        if is_list:
            ids = list(session.scalars(
                select(ManifestChild.child_id).where(ManifestChild.list_id == manifest_id)
                .order_by(ManifestChild.position).limit(MAX_CHILDREN)))
        rows = session.execute(
            select(Blob.id, Blob.digest, Blob.size)
            .join(ManifestBlob, ManifestBlob.blob_id == Blob.id)
            .where(ManifestBlob.manifest_id.in_(ids), ManifestBlob.position >= 0,
                   ~select(Artifact.id).where(Artifact.digest == Blob.digest).exists())
            .order_by(ManifestBlob.manifest_id, ManifestBlob.position)
            .limit(MAX_LAYERS)).all()
        out: list[_Layer] = []
        seen: set[str] = set()
        for blob_id, blob_digest, size in rows:
            if blob_digest in seen or self.fetcher.in_flight(blob_digest) is not None:
                continue
            seen.add(blob_digest)
            found = usable_sources(session, blob_id)
            if not found.usable:
                continue  # foreign layers have no source; cooling ones wait for a client
            first = found.usable[0].remote
            wanted = "all" if is_list else ("platform", "all")
            if first.prefetch not in wanted or first.policy == "streamed":
                continue
            out.append(_Layer(blob_digest, size, found.usable))
        return out
