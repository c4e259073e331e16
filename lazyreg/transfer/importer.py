"""Import an OCI image layout into a repository: all of it checked, then all of it stored.

1. `scan` reads every member once (`members`), refusing unsafe entries, hashing
   every blob against its name and keeping the small JSON ones (manifests and
   configs) in memory, bounded by METADATA_LIMIT.
2. `_plan` walks `index.json` and every manifest's closure: each manifest,
   child, config and layer must be in the layout with the size its descriptor
   says, or already known here (a manifest in the database, a blob stored), so
   that an incremental layout imports onto an earlier import.
3. Only then is anything stored: the blobs not stored yet are read again and
   staged, verified and committed like any download; then one transaction
   records their artifacts and writes the new version. A failure in this step
   deletes the blobs it committed that nothing else recorded meanwhile.

A layout that fails steps 1 or 2 is refused with `BadLayout` naming the entry,
and nothing is stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from lazyreg.db.artifacts import NewArtifact, is_stored, record_artifacts, stored_digests
from lazyreg.db.models import Manifest, Repository
from lazyreg.oci import mediatypes as mt
from lazyreg.oci.manifest import InvalidManifest, parse_manifest
from lazyreg.oci.names import is_tag
from lazyreg.services import Services
from lazyreg.storage.base import DigestMismatch
from lazyreg.sync.record import FetchedManifest, record_import
from lazyreg.sync.store import store_manifests
from lazyreg.taskcontext import Progress
from lazyreg.transfer.layout import (
    INDEX_FILE,
    INDEX_LIMIT,
    LAYOUT_FILE,
    METADATA_BLOB_LIMIT,
    METADATA_LIMIT,
    BadLayout,
    IndexEntry,
    blob_path,
    digest_of_path,
    parse_index,
)
from lazyreg.transfer.members import members

T = TypeVar("T")

LAYOUT_FILE_LIMIT = 4096
IGNORED_LISTED = 10


@dataclass
class Scan:
    entries: list[IndexEntry]
    sizes: dict[str, int]  # every blob of the layout, by digest
    metadata: dict[str, bytes]  # the small JSON blobs (manifests, configs)
    ignored: list[str] = field(default_factory=list)  # members that are no part of a layout


@dataclass
class Plan:
    tags: dict[str, str]  # name -> manifest digest
    untagged: set[str]
    manifests: dict[str, FetchedManifest]  # not in the database yet
    blobs: dict[str, tuple[int, str]]  # to store: digest -> (size, artifact kind)


def scan(path: Path, progress: Progress) -> Scan:
    """Step 1 (blocking: run it in a thread)."""
    index: bytes | None = None
    layout = False
    sizes: dict[str, int] = {}
    metadata: dict[str, bytes] = {}
    kept = 0
    ignored: list[str] = []
    for member in members(path):
        if member.name == LAYOUT_FILE:
            if member.size > LAYOUT_FILE_LIMIT:
                raise BadLayout(f"{LAYOUT_FILE}: {member.size} bytes, too big")
            _check_layout_file(member.read_all())
            layout = True
            continue
        if member.name == INDEX_FILE:
            if member.size > INDEX_LIMIT:
                raise BadLayout(f"{INDEX_FILE}: {member.size} bytes, over {INDEX_LIMIT}")
            index = member.read_all()
            continue
        digest = digest_of_path(member.name)
        if digest is None:
            ignored.append(member.name)
            continue
        algorithm = digest.split(":", 1)[0]
        hasher = hashlib.new(algorithm)
        keep = member.size <= METADATA_BLOB_LIMIT
        pieces: list[bytes] = []
        for piece in member.pieces():
            hasher.update(piece)
            if keep:
                pieces.append(piece)
            progress.advance("bytes checked", len(piece))
        actual = f"{algorithm}:{hasher.hexdigest()}"
        if actual != digest:
            raise BadLayout(f"{member.name}: its content hashes to {actual}")
        sizes[digest] = member.size
        if keep and pieces and pieces[0][:1] == b"{":
            kept += member.size
            if kept > METADATA_LIMIT:
                raise BadLayout(f"more than {METADATA_LIMIT} bytes of manifests and configs")
            metadata[digest] = b"".join(pieces)
        progress.advance("blobs checked")
    if not layout:
        raise BadLayout(f"no {LAYOUT_FILE} file: not an OCI image layout")
    if index is None:
        raise BadLayout(f"no {INDEX_FILE}")
    return Scan(parse_index(index), sizes, metadata, ignored)


def _check_layout_file(data: bytes) -> None:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadLayout(f"{LAYOUT_FILE}: not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("imageLayoutVersion") != "1.0.0":
        raise BadLayout(f"{LAYOUT_FILE}: imageLayoutVersion is not 1.0.0")


class _Walk:
    """Step 2: the closure of every entry of `index.json`, checked."""

    def __init__(self, session: Session, layout: Scan) -> None:
        self.session = session
        self.layout = layout
        self.known: set[str] = set()  # manifests the database holds
        self.new: dict[str, FetchedManifest] = {}
        self.done: set[str] = set()
        self.blobs: dict[str, tuple[int, str]] = {}
        self.outside: set[str] = set()  # blobs named but not in the layout

    def manifest_bytes(self, digest: str, where: str) -> bytes:
        data = self.layout.metadata.get(digest)
        if data is not None:
            return data
        known = self.session.scalar(select(Manifest.data).where(Manifest.digest == digest))
        if known:  # not None, nor PENDING (recorded by a platform filter, never fetched)
            self.known.add(digest)
            return known
        if digest in self.layout.sizes:
            raise BadLayout(f"{blob_path(digest)}: named as a manifest by {where}, but it is"
                            " no JSON document of at most 4 MiB")
        raise BadLayout(f"{blob_path(digest)}: missing (the manifest {where} names)")

    def visit(self, digest: str, size: int, media_type: str, where: str,
              stack: tuple[str, ...] = ()) -> None:
        if digest in stack:
            raise BadLayout(f"{blob_path(digest)}: an index that lists itself (a cycle)")
        if digest in self.done:
            return
        data = self.manifest_bytes(digest, where)
        if len(data) != size:
            raise BadLayout(f"{blob_path(digest)}: {len(data)} bytes, {where} says {size}")
        try:
            parsed = parse_manifest(data, media_type)
            is_manifest = parsed.media_type in mt.KNOWN_MANIFESTS or (
                json.loads(data).get("schemaVersion") == 2)
        except InvalidManifest as exc:
            raise BadLayout(f"{blob_path(digest)}: {exc}") from None
        if not is_manifest:
            raise BadLayout(f"{blob_path(digest)}: not a manifest (no manifest media type,"
                            " no schemaVersion)")
        for child in parsed.children:
            d = child.descriptor
            self.visit(d.digest, d.size, d.media_type, f"index {digest}", (*stack, digest))
        for position, d in parsed.linked_blobs:
            actual = self.layout.sizes.get(d.digest)
            if actual is None:
                self.outside.add(d.digest)
            elif actual != d.size:
                raise BadLayout(f"{blob_path(d.digest)}: {actual} bytes, manifest {digest}"
                                f" says {d.size}")
            else:
                self.blobs[d.digest] = (d.size, "config" if position == -1 else "layer")
        self.done.add(digest)
        if digest not in self.known:
            self.new[digest] = FetchedManifest(digest, data, parsed)


def plan(session: Session, layout: Scan) -> Plan:
    if not layout.entries:
        raise BadLayout(f"{INDEX_FILE}: lists no manifest")
    walk = _Walk(session, layout)
    tags: dict[str, str] = {}
    untagged: set[str] = set()
    for e in layout.entries:
        if e.tag is None:
            untagged.add(e.digest)
        elif not is_tag(e.tag):
            raise BadLayout(f"{INDEX_FILE}: {e.tag[:200]!r} is not a valid tag")
        elif tags.setdefault(e.tag, e.digest) != e.digest:
            raise BadLayout(f"{INDEX_FILE}: tag {e.tag!r} names two manifests")
        walk.visit(e.digest, e.size, e.media_type, f"{INDEX_FILE} ({e.tag or 'untagged'})")
    if walk.outside:
        stored = stored_digests(session, walk.outside)
        missing = sorted(walk.outside - stored)
        if missing:
            raise BadLayout(f"{blob_path(missing[0])}: missing, and not stored here"
                            + (f" ({len(missing) - 1} more)" if len(missing) > 1 else ""))
    stored = stored_digests(session, walk.blobs)
    blobs = {d: v for d, v in walk.blobs.items() if d not in stored}
    return Plan(tags, untagged - set(tags.values()), walk.new, blobs)


async def _store_blobs(services: Services, path: Path, wanted: dict[str, tuple[int, str]],
                       progress: Progress) -> list[NewArtifact]:
    """Step 3's blobs: staged and committed from a second read of the layout."""
    loop = asyncio.get_running_loop()
    committed: list[NewArtifact] = []

    def run(coro: Coroutine[Any, Any, T]) -> T:
        # From the copying thread: the coroutine runs on the event loop.
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def copy() -> None:
        for member in members(path):
            digest = digest_of_path(member.name)
            if digest is None or digest not in wanted:
                continue
            size, kind = wanted[digest]
            staged = run(services.store.stage(digest, size))
            try:
                for piece in member.pieces():
                    staged.write(piece)
                    progress.advance("bytes stored", len(piece))
                location = run(staged.commit())
            except BaseException:
                run(staged.abort())
                raise
            committed.append(NewArtifact(digest, size, kind, location))
            progress.advance("blobs stored")

    try:
        await asyncio.to_thread(copy)
    except DigestMismatch as exc:
        await _forget(services, [a.digest for a in committed])
        raise BadLayout(f"the layout changed while it was imported: {exc}") from None
    except BaseException:
        await _forget(services, [a.digest for a in committed])
        raise
    missing = set(wanted) - {a.digest for a in committed}
    if missing:
        await _forget(services, [a.digest for a in committed])
        raise BadLayout(f"{blob_path(min(missing))}: gone from the layout while it was"
                        " imported")
    return committed


async def _forget(services: Services, digests: Iterable[str]) -> None:
    """Delete blobs this import committed, unless something recorded them meanwhile."""
    for digest in digests:
        def recorded(session: Session, digest: str = digest) -> bool:
            return is_stored(session, digest)
        if not await services.db.read(recorded):
            await services.store.delete(digest)


async def import_layout(services: Services, progress: Progress, repository: str, path: Path,
                        task_id: str | None) -> tuple[int | None, list[str]]:
    """Import the layout at `path`; the new version's number (None if nothing changed)
    and the warnings (members that are no part of a layout)."""
    progress.message = f"checking {path}"
    layout = await asyncio.to_thread(scan, path, progress)
    found = await services.db.read(lambda s: plan(s, layout))
    warnings = []
    if layout.ignored:
        shown = ", ".join(layout.ignored[:IGNORED_LISTED])
        warnings.append(f"ignored {len(layout.ignored)} members that are no part of an OCI"
                        f" image layout: {shown}")
    progress.add_total("blobs stored", len(found.blobs))
    progress.add_total("bytes stored", sum(size for size, _ in found.blobs.values()))
    progress.message = (f"storing {len(found.blobs)} blobs and {len(found.manifests)}"
                        " manifests")
    services.usage.used(found.blobs)  # orphan cleanup keeps them until the version is written
    committed = await _store_blobs(services, path, found.blobs, progress)
    try:
        await store_manifests(services, found.manifests.values())

        def write(session: Session) -> int | None:
            record_artifacts(session, committed)
            version = record_import(session, _repository_id(session, repository), found.tags,
                                    found.manifests, found.untagged, task_id)
            return None if version is None else version.number
        number = await services.db.write(write)
    except BaseException:
        await _forget(services, [a.digest for a in committed])
        raise
    progress.message = (f"imported {len(found.tags)} tags: {len(found.manifests)} new manifests,"
                        f" {len(committed)} new blobs"
                        + (f", version {number}" if number is not None else ", no changes"))
    return number, warnings


def _repository_id(session: Session, name: str) -> int:
    """The repository's id, creating it (with the version) if it does not exist."""
    found = session.scalar(select(Repository.id).where(Repository.name == name))
    if found is not None:
        return found
    repository = Repository(name=name, description="", latest_version=0)
    session.add(repository)
    session.flush()
    return repository.id
