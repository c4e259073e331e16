"""Write what a sync found as content rows and one new repository version, in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from lazyreg.db import content as q
from lazyreg.db.models import (
    Artifact,
    BlobSource,
    Content,
    Manifest,
    ManifestBlob,
    ManifestChild,
    Repository,
    RepositoryVersion,
)
from lazyreg.oci.manifest import ParsedManifest


@dataclass
class FetchedManifest:
    digest: str
    data: bytes
    parsed: ParsedManifest
    location: str  # where its bytes were stored


@dataclass
class SyncFindings:
    repository_id: int
    remote_id: int
    upstream_name: str
    mirror: bool
    tags: dict[str, str]  # tag name -> manifest digest
    new_manifests: dict[str, FetchedManifest] = field(default_factory=dict)
    # Stored during this sync (config blobs, immediate layers): digest -> (size, kind, location)
    stored_blobs: dict[str, tuple[int, str, str]] = field(default_factory=dict)


def _insert_manifest(session: Session, m: FetchedManifest, manifest_ids: dict[str, int],
                     blob_ids: dict[str, int]) -> None:
    if m.digest in manifest_ids:
        return
    for child in m.parsed.children:
        if child.descriptor.digest not in manifest_ids:
            raise ValueError(f"child manifest {child.descriptor.digest} was not fetched")
    content = Content(kind="manifest")
    session.add(content)
    session.flush()
    config = m.parsed.config
    session.add(Manifest(id=content.id, digest=m.digest, media_type=m.parsed.media_type,
                         size=len(m.data), data=m.data,
                         config_digest=config.digest if config else None))
    manifest_ids[m.digest] = content.id
    session.flush()
    for position, desc in enumerate(m.parsed.blobs):
        blob_id = q.get_or_create_blob(session, desc.digest, desc.size, desc.media_type, blob_ids)
        # the config is position -1 so that layers keep their own order from 0
        session.add(ManifestBlob(manifest_id=content.id,
                                 position=position - 1 if config else position, blob_id=blob_id))
    for position, child in enumerate(m.parsed.children):
        plat = child.platform
        session.add(ManifestChild(
            list_id=content.id, position=position,
            child_id=manifest_ids[child.descriptor.digest],
            os=plat.os if plat else "", architecture=plat.architecture if plat else "",
            variant=plat.variant if plat else ""))
    if not session.scalar(select(Artifact.id).where(Artifact.digest == m.digest)):
        session.add(Artifact(digest=m.digest, size=len(m.data), kind="manifest",
                             location=m.location))


def _ordered(manifests: dict[str, FetchedManifest]) -> list[FetchedManifest]:
    """Children before the lists that name them."""
    done: set[str] = set()
    out: list[FetchedManifest] = []

    def visit(m: FetchedManifest) -> None:
        if m.digest in done:
            return
        done.add(m.digest)
        for child in m.parsed.children:
            if child.descriptor.digest in manifests:
                visit(manifests[child.descriptor.digest])
        out.append(m)
    for m in manifests.values():
        visit(m)
    return out


def record_sync(session: Session, findings: SyncFindings,
                task_id: str | None) -> RepositoryVersion | None:
    """Insert new content, then create the new version; None when nothing changed."""
    repository = session.get_one(Repository, findings.repository_id)
    all_digests = set(findings.tags.values()) | set(findings.new_manifests)
    manifest_ids = q.manifest_ids_by_digest(session, sorted(all_digests))
    blob_ids: dict[str, int] = {}
    for m in _ordered(findings.new_manifests):
        _insert_manifest(session, m, manifest_ids, blob_ids)
    session.flush()

    tag_ids = {q.find_tag_id(session, name, manifest_ids[digest])
               for name, digest in findings.tags.items()}
    top = {manifest_ids[d] for d in findings.tags.values()}
    manifests, blobs = q.manifest_closure(session, top)
    _record_sources(session, findings, blobs)
    for digest, (size, kind, location) in findings.stored_blobs.items():
        if not session.scalar(select(Artifact.id).where(Artifact.digest == digest)):
            session.add(Artifact(digest=digest, size=size, kind=kind, location=location))

    synced = tag_ids | manifests | blobs
    if findings.mirror:
        content = synced
    else:
        # Additive, but a tag name points at one manifest: the synced tag replaces
        # the old one of the same name.
        current = q.version_content_ids(session, repository.id, repository.latest_version)
        names = q.tag_names(session, current)
        replaced = {tid for tid, name in names.items() if name in findings.tags}
        content = (current - replaced) | synced
    return q.create_version(session, repository, content, task_id)


def _record_sources(session: Session, findings: SyncFindings, blob_ids: set[int]) -> None:
    existing: set[int] = set()
    for batch in q.chunked(sorted(blob_ids)):
        existing.update(session.scalars(select(BlobSource.blob_id).where(
            BlobSource.blob_id.in_(batch),
            BlobSource.remote_id == findings.remote_id,
            BlobSource.upstream_name == findings.upstream_name)))
    session.add_all(BlobSource(blob_id=b, remote_id=findings.remote_id,
                               upstream_name=findings.upstream_name)
                    for b in sorted(blob_ids - existing))

