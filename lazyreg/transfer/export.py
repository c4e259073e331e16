"""Export one repository version as an OCI image layout (see `layout`, `sink`).

What is written: `oci-layout`, `index.json` (every tag, and the untagged
top-level manifests such as referrers), then every manifest of the version
(from the database, byte-exact) and every blob. A blob that is not stored yet
is read through the lazy store, the path a client's pull takes: one download
per blob whatever else asks for it, verified, and stored as its repository's
policy says; with `stored_only` the export fails first, naming what is missing.

With `since` (a version number), only the manifests and blobs that version
lacks are written, with the full `index.json`: the far side imports it onto
what it imported before (`importer` accepts a blob or manifest it already holds).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from lazyreg.db import content as q
from lazyreg.db.artifacts import stored_digests
from lazyreg.db.models import (
    PENDING,
    Blob,
    Manifest,
    ManifestChild,
    Repository,
    RepositoryVersion,
)
from lazyreg.fetch import BlobRef, LazyStore
from lazyreg.services import Services
from lazyreg.storage.base import Chunk
from lazyreg.sync.pending import PendingManifests
from lazyreg.taskcontext import Progress
from lazyreg.transfer.layout import (
    INDEX_FILE,
    LAYOUT_FILE,
    LAYOUT_VERSION,
    IndexEntry,
    blob_path,
    index_document,
)
from lazyreg.transfer.sink import open_sink

PIECE = 1024 * 1024  # bytes read from a blob body and written at a time
MANIFEST_BATCH = 200  # manifests read from the database at once
MISSING_LISTED = 20  # digests a `stored_only` failure names


class ExportError(Exception):
    """The export cannot be made as asked (the message says why); nothing was written."""


@dataclass(frozen=True)
class _Plan:
    entries: list[IndexEntry]
    manifests: list[tuple[int, str]]  # (id, digest) to write
    blobs: list[BlobRef]  # to write
    missing: list[str]  # of `blobs`, not stored


def _version_number(session: Session, repository: Repository, number: int | None,
                     what: str) -> int:
    if number is None:
        return repository.latest_version
    found = session.scalar(select(RepositoryVersion.id).where(
        RepositoryVersion.repository_id == repository.id, RepositoryVersion.number == number))
    if found is None:
        raise ExportError(f"{what}: repository {repository.name!r} has no version {number}")
    return number


def _plan(session: Session, repository_name: str, number: int | None,
          since: int | None) -> _Plan:
    repository = session.scalar(select(Repository).where(Repository.name == repository_name))
    if repository is None:
        raise ExportError(f"repository {repository_name!r} not found")
    number = _version_number(session, repository, number, "version")
    kinds = q.version_contents(session, repository.id, number)
    manifest_ids = [i for i, k in kinds.items() if k == "manifest"]
    blob_ids = [i for i, k in kinds.items() if k == "blob"]
    rows: dict[int, tuple[str, str, int]] = {}
    children: set[int] = set()
    for batch in q.chunked(sorted(manifest_ids)):
        rows.update((i, (d, mt, s)) for i, d, mt, s in session.execute(
            select(Manifest.id, Manifest.digest, Manifest.media_type, Manifest.size)
            .where(Manifest.id.in_(batch))))
        children.update(session.scalars(
            select(ManifestChild.child_id).where(ManifestChild.list_id.in_(batch))))
    entries = []
    tagged: set[int] = set()
    for name, manifest_id in session.execute(q.tags_in_version(session, repository.id, number)):
        digest, media_type, size = rows[manifest_id]
        entries.append(IndexEntry(digest, media_type, size, name))
        tagged.add(manifest_id)
    entries.sort(key=lambda e: e.tag or "")
    # Manifests nothing else leads to (referrers, pinned digests): listed without a name,
    # so that the layout holds them as roots of its own.
    for manifest_id in sorted(set(rows) - tagged - children):
        digest, media_type, size = rows[manifest_id]
        entries.append(IndexEntry(digest, media_type, size, None))
    blobs: list[BlobRef] = []
    for batch in q.chunked(sorted(blob_ids)):
        blobs.extend(BlobRef(d, s, i) for i, d, s in session.execute(
            select(Blob.id, Blob.digest, Blob.size).where(Blob.id.in_(batch))))
    if since is not None:
        base = _version_number(session, repository, since, "since")
        if base >= number:
            raise ExportError(f"since: version {base} is not older than version {number}")
        had = q.version_content_ids(session, repository.id, base)
        manifest_ids = [i for i in manifest_ids if i not in had]
        blobs = [b for b in blobs if b.blob_id not in had]
    blobs.sort(key=lambda b: b.digest)
    stored = stored_digests(session, [b.digest for b in blobs])
    return _Plan(entries, sorted((i, rows[i][0]) for i in manifest_ids), blobs,
                 [b.digest for b in blobs if b.digest not in stored])


def _manifest_data(session: Session, ids: list[int]) -> dict[int, bytes]:
    return dict(session.execute(
        select(Manifest.id, Manifest.data).where(Manifest.id.in_(ids))).all())


async def _one(data: bytes) -> AsyncIterator[Chunk]:
    yield data


async def _blob_chunks(lazy: LazyStore, blob: BlobRef, progress: Progress
                       ) -> AsyncIterator[Chunk]:
    body = await lazy.open(blob)
    try:
        async for reader, offset, count in body.spans(0, blob.size):
            end = offset + count
            while offset < end:
                chunk = await reader.read(offset, min(PIECE, end - offset))
                if not chunk:
                    raise ExportError(f"blob {blob.digest} ended early at byte {offset}")
                offset += len(chunk)
                progress.advance("bytes", len(chunk))
                yield chunk
    finally:
        body.close()


async def export_version(services: Services, lazy: LazyStore, progress: Progress,
                         repository: str, number: int | None, output: Path, *,
                         since: int | None = None, stored_only: bool = False,
                         pending: PendingManifests | None = None) -> str:
    """Write the layout to `output` (a directory, `.tar`, `.tar.gz`); a one-line summary."""
    plan = await services.db.read(lambda s: _plan(s, repository, number, since))
    if stored_only and plan.missing:
        listed = ", ".join(plan.missing[:MISSING_LISTED])
        more = len(plan.missing) - MISSING_LISTED
        raise ExportError(f"{len(plan.missing)} blobs are not stored (stored_only): {listed}"
                          + (f" and {more} more" if more > 0 else ""))
    if output.exists():
        raise ExportError(f"output: {output} already exists")
    progress.add_total("manifests", len(plan.manifests))
    progress.add_total("blobs", len(plan.blobs))
    progress.add_total("bytes", sum(b.size for b in plan.blobs))
    progress.message = (f"exporting {len(plan.entries)} entries, {len(plan.blobs)} blobs"
                        f" ({len(plan.missing)} to fetch)")
    sink = open_sink(output)
    try:
        await sink.add(LAYOUT_FILE, len(LAYOUT_VERSION), _one(LAYOUT_VERSION))
        index = index_document(plan.entries)
        await sink.add(INDEX_FILE, len(index), _one(index))
        for batch in q.chunked(plan.manifests, MANIFEST_BATCH):
            ids = [i for i, _ in batch]
            found = await services.db.read(partial(_manifest_data, ids=ids))
            for manifest_id, digest in batch:
                data: bytes = found[manifest_id]
                if data == PENDING:  # left by a sync's platform filter: fetched now
                    if pending is None or stored_only:
                        raise ExportError(f"manifest {digest} was never fetched (the"
                                          " remote's platforms): export without stored_only")
                    data = await pending.fetch(digest)
                await sink.add(blob_path(digest), len(data), _one(data))
                progress.advance("manifests")
        for blob in plan.blobs:
            await sink.add(blob_path(blob.digest), blob.size,
                           _blob_chunks(lazy, blob, progress))
            progress.advance("blobs")
        await sink.finish()
    except BaseException:
        await sink.discard()
        raise
    tags = sum(1 for e in plan.entries if e.tag is not None)
    summary = (f"exported {tags} tags, {len(plan.manifests)} manifests and"
               f" {len(plan.blobs)} blobs to {output}")
    if plan.missing:
        summary += f" ({len(plan.missing)} blobs fetched on demand)"
    progress.message = summary
    return summary
