"""Sync a repository from a remote.

1. list the upstream's tags and apply the remote's include/exclude globs;
2. HEAD every tag; a digest already known is not fetched again;
3. GET the new manifests concurrently, recursing into lists and indexes;
4. store config blobs (image metadata), and every blob with `immediate`;
5. write content and one new version in one transaction.

Nothing is written to the database before step 5 except the artifacts of
what step 4 stored (and of the new manifests), which are whole, verified and
reusable whether or not a version follows.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lazyreg.db import content as q
from lazyreg.db.engine import Database
from lazyreg.db.models import (
    Artifact,
    Blob,
    Manifest,
    ManifestBlob,
    Remote,
    Repository,
    RepositoryVersion,
)
from lazyreg.errors import NotFound
from lazyreg.fetch import Fetcher, Source
from lazyreg.oci.digest import sha256_digest
from lazyreg.oci.manifest import InvalidManifest, parse_manifest
from lazyreg.storage.filesystem import FilesystemStore
from lazyreg.sync.filters import filter_tags
from lazyreg.sync.record import FetchedManifest, SyncFindings, record_sync
from lazyreg.tasks.runner import TaskContext
from lazyreg.upstream.client import UpstreamClient
from lazyreg.upstream.errors import DigestMismatch, InvalidResponse

log = logging.getLogger(__name__)


SMALL_BLOB = 4 * 1024 * 1024  # configs up to this size are fetched whole, in memory


@dataclass(frozen=True)
class BlobNeed:
    digest: str
    size: int
    is_config: bool


async def sync_repository(ctx: TaskContext, fetcher: Fetcher, repository_name: str,
                          remote_name: str, mirror: bool) -> list[str]:
    services, progress = ctx.services, ctx.progress

    def load(session: Session) -> tuple[Repository, Remote]:
        repo = session.scalar(select(Repository).where(Repository.name == repository_name))
        if repo is None:
            raise NotFound("repository", repository_name)
        remote = session.scalar(select(Remote).where(Remote.name == remote_name))
        if remote is None:
            raise NotFound("remote", remote_name)
        return repo, remote
    repo, remote = await services.db.read(load)
    client = services.upstream_for(remote)
    name = remote.upstream_name

    progress.message = f"listing tags of {name}"
    tags = filter_tags(await client.list_tags(name), remote.include_tags, remote.exclude_tags)
    progress.add_total("tags", len(tags))

    progress.message = "checking manifests"
    tag_digests = await _resolve_tags(client, name, tags, ctx)
    known = await services.db.read(
        lambda s: q.manifest_ids_by_digest(s, sorted(set(tag_digests.values()) - {""})))

    fetched: dict[str, FetchedManifest] = {}
    await _fetch_manifests(client, name, tag_digests, known, fetched, ctx)

    progress.message = "storing blobs"
    needs = await services.db.read(lambda s: _blob_needs(s, fetched, set(known.values())))
    stored = await services.db.read(lambda s: _stored(s, [n.digest for n in needs]))
    wanted = [n for n in needs if n.digest not in stored
              and (n.is_config or remote.policy == "immediate")]
    progress.add_total("blobs", len(wanted))
    source = Source(client, name, remote_name=remote.name)

    async def fetch_config(need: BlobNeed) -> tuple[str, bytes]:
        # Configs are small: fetched whole, without the lease machinery of layers.
        data = await client.get_blob_bytes(name, need.digest)
        if len(data) != need.size or sha256_digest(data) != need.digest:
            raise DigestMismatch(f"config blob {need.digest} of {name}: upstream sent"
                                 f" {len(data)} bytes hashing to {sha256_digest(data)}")
        progress.advance("blobs")
        return need.digest, data

    async def fetch_layer(need: BlobNeed) -> None:
        await fetcher.fetch(need.digest, need.size, [source], kind="layer")
        progress.advance("blobs")

    configs = [n for n in wanted if n.is_config and n.size <= SMALL_BLOB]
    layers = [n for n in wanted if n not in configs]
    config_data = await asyncio.gather(*(fetch_config(n) for n in configs))
    await asyncio.gather(*(fetch_layer(n) for n in layers))

    progress.message = "creating the repository version"
    manifest_data = [(m.digest, m.data) for m in fetched.values()]
    await asyncio.to_thread(services.store.put_many, [*config_data, *manifest_data])
    stored_now = ([(d, len(data), "config") for d, data in config_data]
                  + [(d, len(data), "manifest") for d, data in manifest_data])
    # Whole, verified blobs: recorded now, whatever happens to the version below.
    await services.db.write(lambda s: _record_artifacts(s, services.store, stored_now))
    findings = SyncFindings(repository_id=repo.id, remote_id=remote.id, upstream_name=name,
                            mirror=mirror, tags=tag_digests, new_manifests=fetched)
    version = await _record(services.db, findings, ctx.task_id)
    if version is None:
        progress.message = f"no changes: version {repo.latest_version} is up to date"
        return []
    counts = version.content_counts
    progress.message = (f"created version {version.number}: {counts.get('tags', 0)} tags,"
                        f" {counts.get('manifests', 0)} manifests, {counts.get('blobs', 0)} blobs")
    return [f"repositories/{repository_name}/versions/{version.number}/"]


async def _record(db: Database, findings: SyncFindings, task_id: str) -> RepositoryVersion | None:
    # A concurrent sync of another repository may insert the same new content
    # first (a unique violation on PostgreSQL): the next attempt finds it.
    attempts = 3
    while True:
        try:
            return await db.write(lambda s: record_sync(s, findings, task_id))
        except IntegrityError:
            attempts -= 1
            if not attempts:
                raise


async def _resolve_tags(client: UpstreamClient, name: str, tags: list[str],
                        ctx: TaskContext) -> dict[str, str]:
    """tag -> manifest digest, by HEAD (no body). "" when the upstream gave no digest."""
    async def head(tag: str) -> tuple[str, str]:
        info = await client.head_manifest(name, tag)
        ctx.progress.advance("tags")
        return tag, info.digest or ""
    return dict(await asyncio.gather(*(head(t) for t in tags)))


async def _fetch_manifests(client: UpstreamClient, name: str, tag_digests: dict[str, str],
                           known: dict[str, int], fetched: dict[str, FetchedManifest],
                           ctx: TaskContext) -> None:
    scheduled: set[str] = set()

    async def get(reference: str, expected: str | None) -> str:
        data, content_type = await client.get_manifest(name, reference)
        try:
            parsed = parse_manifest(data, content_type)
        except InvalidManifest as exc:
            raise InvalidResponse(f"manifest {name}:{reference} is malformed: {exc}") from exc
        digest = sha256_digest(data)
        if expected and digest != expected:
            raise DigestMismatch(f"manifest {name}@{reference}: upstream sent {digest}")
        fetched[digest] = FetchedManifest(digest, data, parsed)
        ctx.progress.advance("manifests")
        children = [c.descriptor.digest for c in parsed.children
                    if c.descriptor.digest not in known and c.descriptor.digest not in scheduled]
        scheduled.update(children)
        ctx.progress.add_total("manifests", len(children))
        await asyncio.gather(*(get(c, c) for c in children))
        return digest

    async def get_tag(tag: str, digest: str) -> None:
        tag_digests[tag] = await get(tag, digest or None)

    todo = {}
    for tag, digest in tag_digests.items():
        if digest and (digest in known or digest in scheduled):
            continue
        if digest:
            scheduled.add(digest)
        todo[tag] = digest
    ctx.progress.add_total("manifests", len(todo))
    await asyncio.gather(*(get_tag(t, d) for t, d in todo.items()))


def _blob_needs(session: Session, fetched: dict[str, FetchedManifest],
                known_ids: set[int]) -> list[BlobNeed]:
    needs: dict[str, BlobNeed] = {}
    for m in fetched.values():
        if m.parsed.config:
            c = m.parsed.config
            needs[c.digest] = BlobNeed(c.digest, c.size, True)
        for layer in m.parsed.layers:
            needs.setdefault(layer.digest, BlobNeed(layer.digest, layer.size, False))
    manifests, _ = q.manifest_closure(session, known_ids)
    for batch in q.chunked(sorted(manifests)):
        rows = session.execute(
            select(Blob.digest, Blob.size, Manifest.config_digest)
            .join(ManifestBlob, ManifestBlob.blob_id == Blob.id)
            .join(Manifest, Manifest.id == ManifestBlob.manifest_id)
            .where(ManifestBlob.manifest_id.in_(batch)))
        for digest, size, config_digest in rows:
            is_config = digest == config_digest
            if is_config or digest not in needs:
                needs[digest] = BlobNeed(digest, size, is_config)
    return list(needs.values())


def _record_artifacts(session: Session, store: FilesystemStore,
                      stored: list[tuple[str, int, str]]) -> None:
    existing = _stored(session, [digest for digest, _, _ in stored])
    session.add_all(Artifact(digest=digest, size=size, kind=kind,
                             location=store.location(digest))
                    for digest, size, kind in stored if digest not in existing)


def _stored(session: Session, digests: list[str]) -> set[str]:
    out: set[str] = set()
    for batch in q.chunked(digests):
        out.update(session.scalars(select(Artifact.digest).where(Artifact.digest.in_(batch))))
    return out
