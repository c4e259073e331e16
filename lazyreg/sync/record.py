"""Write what a sync found as content rows and one new repository version, in one transaction.

Every manifest the sync fetched gets a `ManifestSource` row (this remote and
upstream name served those bytes), and a `BlobSource` row is added only for
blobs of manifests in the synced closure, which this remote served. Foreign
layers get neither a blob row nor a link: a version never holds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from lazyreg.db import content as q
from lazyreg.db.models import (
    PENDING,
    Blob,
    BlobSource,
    Content,
    Manifest,
    ManifestBlob,
    ManifestChild,
    ManifestSource,
    Remote,
    Repository,
    RepositoryContent,
    RepositoryVersion,
    Tag,
)
from lazyreg.oci.manifest import Descriptor, ParsedManifest


@dataclass
class FetchedManifest:
    digest: str
    data: bytes
    parsed: ParsedManifest


@dataclass
class SyncFindings:
    repository_id: int
    remote_id: int
    upstream_name: str
    mirror: bool
    tags: dict[str, str]  # tag name -> manifest digest
    # Every manifest this sync fetched (and verified), whether new or already known.
    new_manifests: dict[str, FetchedManifest] = field(default_factory=dict)
    # Manifests the version holds without a tag: referrers found by digest.
    untagged: set[str] = field(default_factory=set)
    # Tags skipped this time (broken upstream): a mirror sync keeps what they were.
    keep_tags: set[str] = field(default_factory=set)
    # Index children left by the platform filter: recorded (empty `data`), not fetched.
    pending: dict[str, Descriptor] = field(default_factory=dict)


def _new_content_ids(session: Session, kind: str, n: int) -> list[int]:
    """Insert `n` content rows of one kind in one statement; their ids, in order."""
    if not n:
        return []
    rows = session.execute(insert(Content).returning(Content.id, sort_by_parameter_order=True),
                           [{"kind": kind}] * n)
    return list(rows.scalars())


def _insert_blobs(session: Session, manifests: list[FetchedManifest]) -> dict[str, int]:
    """Blob ids by digest for every blob the manifests name, inserting the new ones."""
    wanted = {d.digest: d for m in manifests for _, d in m.parsed.linked_blobs}
    ids = q.blob_ids_by_digest(session, sorted(wanted))
    new = [wanted[d] for d in sorted(wanted) if d not in ids]
    new_ids = _new_content_ids(session, "blob", len(new))
    if new:
        session.execute(insert(q.table(Blob)), [
            {"id": i, "digest": d.digest, "size": d.size, "media_type": d.media_type}
            for i, d in zip(new_ids, new, strict=True)])
    ids.update((d.digest, i) for d, i in zip(new, new_ids, strict=True))
    return ids


def _insert_manifests(session: Session, manifests: list[FetchedManifest],
                      manifest_ids: dict[str, int]) -> None:
    """Insert new manifests with their blobs and children, a few statements in all."""
    new = [m for m in manifests if m.digest not in manifest_ids]
    if not new:
        return
    blob_ids = _insert_blobs(session, new)
    for m, i in zip(new, _new_content_ids(session, "manifest", len(new)), strict=True):
        manifest_ids[m.digest] = i
    session.execute(insert(q.table(Manifest)), [
        {"id": manifest_ids[m.digest], "digest": m.digest, "media_type": m.parsed.media_type,
         "size": len(m.data), "data": m.data,
         "config_digest": m.parsed.config.digest if m.parsed.config else None,
         "subject_digest": m.parsed.subject.digest if m.parsed.subject else None,
         "artifact_type": m.parsed.artifact_type}
        for m in new])
    # The config is position -1 so that layers keep their own order from 0.
    links = [{"manifest_id": manifest_ids[m.digest], "position": pos,
              "blob_id": blob_ids[d.digest]}
             for m in new for pos, d in m.parsed.linked_blobs]
    children = []
    for m in new:
        for pos, child in enumerate(m.parsed.children):
            if child.descriptor.digest not in manifest_ids:
                raise ValueError(f"child manifest {child.descriptor.digest} was not fetched")
            plat = child.platform
            children.append({"list_id": manifest_ids[m.digest], "position": pos,
                             "child_id": manifest_ids[child.descriptor.digest],
                             "os": plat.os if plat else "",
                             "architecture": plat.architecture if plat else "",
                             "variant": plat.variant if plat else ""})
    if links:
        session.execute(insert(q.table(ManifestBlob)), links)
    if children:
        session.execute(insert(q.table(ManifestChild)), children)


def _insert_pending(session: Session, pending: dict[str, Descriptor],
                    manifest_ids: dict[str, int]) -> list[int]:
    """Rows for children recorded but not fetched (their descriptor's type and size)."""
    new = [d for digest, d in sorted(pending.items()) if digest not in manifest_ids]
    ids = _new_content_ids(session, "manifest", len(new))
    if new:
        session.execute(insert(q.table(Manifest)), [
            {"id": i, "digest": d.digest, "media_type": d.media_type, "size": d.size,
             "data": PENDING} for i, d in zip(ids, new, strict=True)])
    manifest_ids.update((d.digest, i) for d, i in zip(new, ids, strict=True))
    return ids


def _tag_ids(session: Session, tags: dict[str, int]) -> set[int]:
    """Ids of the (name, manifest) tags, inserting the new ones."""
    existing: dict[tuple[str, int], int] = {}
    for batch in q.chunked(sorted(set(tags.values()))):
        for tag_id, name, manifest_id in session.execute(
                select(Tag.id, Tag.name, Tag.manifest_id).where(Tag.manifest_id.in_(batch))):
            existing[(name, manifest_id)] = tag_id
    new = [(n, m) for n, m in sorted(tags.items()) if (n, m) not in existing]
    new_ids = _new_content_ids(session, "tag", len(new))
    if new:
        session.execute(insert(q.table(Tag)), [{"id": i, "name": n, "manifest_id": m}
                                      for i, (n, m) in zip(new_ids, new, strict=True)])
    return {existing[pair] for pair in tags.items() if pair in existing} | set(new_ids)


def _ordered(manifests: dict[str, FetchedManifest]) -> list[FetchedManifest]:
    """Children before the lists that name them (the sync refused cycles)."""
    done: set[str] = set()
    out: list[FetchedManifest] = []
    for first in manifests.values():
        if first.digest in done:
            continue
        done.add(first.digest)
        stack = [(first, iter(first.parsed.children))]
        while stack:
            m, pending = stack[-1]
            child = next(pending, None)
            if child is None:
                stack.pop()
                out.append(m)
                continue
            found = manifests.get(child.descriptor.digest)
            if found is not None and found.digest not in done:
                done.add(found.digest)
                stack.append((found, iter(found.parsed.children)))
    return out


def _referenced(findings: SyncFindings) -> set[str]:
    """Every manifest digest the findings name: tagged, untagged, fetched, children."""
    children = {c.descriptor.digest for m in findings.new_manifests.values()
                for c in m.parsed.children}
    return (set(findings.tags.values()) | findings.untagged | set(findings.new_manifests)
            | children)


def record_sync(session: Session, findings: SyncFindings,
                task_id: str | None) -> RepositoryVersion | None:
    """Insert new content, then create the new version; None when nothing changed."""
    repository = session.get_one(Repository, findings.repository_id)
    # Whether its blobs stay stored (`lazyreg.db.space`): as the latest sync's remote says.
    repository.sync_policy = session.get_one(Remote, findings.remote_id).policy
    manifest_ids = q.manifest_ids_by_digest(session, sorted(_referenced(findings)))
    _fill_referrer_columns(session, findings, manifest_ids)
    pending = {d: desc for d, desc in findings.pending.items()
               if d not in findings.new_manifests}
    _insert_pending(session, pending, manifest_ids)
    _insert_manifests(session, _ordered(findings.new_manifests), manifest_ids)
    # A pending child's source is the remote whose verified index named it.
    _record_manifest_sources(session, findings,
                             {manifest_ids[d] for d in (*findings.new_manifests, *pending)})
    tag_ids = _tag_ids(session, {name: manifest_ids[digest]
                                 for name, digest in findings.tags.items()})
    top = {manifest_ids[d] for d in (*findings.tags.values(), *findings.untagged)}
    manifests, blobs = q.manifest_closure(session, top)
    _record_sources(session, findings, blobs)

    synced = tag_ids | manifests | blobs
    kinds = {**dict.fromkeys(tag_ids, "tag"), **dict.fromkeys(manifests, "manifest"),
             **dict.fromkeys(blobs, "blob")}
    current = q.version_contents(session, repository.id, repository.latest_version)
    names = q.tag_names(session, [i for i, kind in current.items() if kind == "tag"])
    if findings.mirror:
        # Equal to the upstream, except that a tag which failed this time is
        # still listed there: it keeps what it was.
        kept = {tid for tid, name in names.items()
                if name in findings.keep_tags and name not in findings.tags}
        kept_manifests: set[int] = set()
        for batch in q.chunked(sorted(kept)):
            kept_manifests.update(session.scalars(
                select(Tag.manifest_id).where(Tag.id.in_(batch))))
        kept_closure = q.manifest_closure(session, kept_manifests)
        content = synced | kept | kept_closure[0] | kept_closure[1]
    else:
        # Additive, but a tag name points at one manifest: the synced tag replaces
        # the old one of the same name.
        replaced = {tid for tid, name in names.items() if name in findings.tags}
        content = (current.keys() - replaced) | synced
    return q.create_version(session, repository, content, task_id, kinds=kinds,
                            current=current)


def _fill_referrer_columns(session: Session, findings: SyncFindings,
                           manifest_ids: dict[str, int]) -> None:
    """Subject and artifact type of known manifests fetched again, where still unset."""
    known = [m for d, m in findings.new_manifests.items()
             if d in manifest_ids and (m.parsed.subject or m.parsed.artifact_type)]
    for batch in q.chunked(known):
        rows = {row.id: row for row in session.scalars(select(Manifest).where(
            Manifest.id.in_([manifest_ids[m.digest] for m in batch])))}
        for m in batch:
            row = rows[manifest_ids[m.digest]]
            if row.subject_digest is None and m.parsed.subject is not None:
                row.subject_digest = m.parsed.subject.digest
            if row.artifact_type is None and m.parsed.artifact_type is not None:
                row.artifact_type = m.parsed.artifact_type


def _record_manifest_sources(session: Session, findings: SyncFindings,
                             manifest_ids: set[int]) -> None:
    existing: set[int] = set()
    for batch in q.chunked(sorted(manifest_ids)):
        existing.update(session.scalars(select(ManifestSource.manifest_id).where(
            ManifestSource.manifest_id.in_(batch),
            ManifestSource.remote_id == findings.remote_id,
            ManifestSource.upstream_name == findings.upstream_name)))
    new = sorted(manifest_ids - existing)
    if new:
        session.execute(insert(q.table(ManifestSource)), [
            {"manifest_id": m, "remote_id": findings.remote_id,
             "upstream_name": findings.upstream_name} for m in new])


def _record_sources(session: Session, findings: SyncFindings, blob_ids: set[int]) -> None:
    existing: set[int] = set()
    for batch in q.chunked(sorted(blob_ids)):
        existing.update(session.scalars(select(BlobSource.blob_id).where(
            BlobSource.blob_id.in_(batch),
            BlobSource.remote_id == findings.remote_id,
            BlobSource.upstream_name == findings.upstream_name)))
    new = sorted(blob_ids - existing)
    for batch in q.chunked(new, 300):  # 3 parameters a row
        session.execute(insert(q.table(BlobSource)), [
            {"blob_id": b, "remote_id": findings.remote_id,
             "upstream_name": findings.upstream_name} for b in batch])


def fill_pending(session: Session, fetched: FetchedManifest, remote_id: int,
                 upstream_name: str) -> bool:
    """Fill in a manifest recorded but not fetched (`pending`), now that its bytes came.

    Its blobs get rows, links and this source; every version that holds the
    manifest then holds its blobs too (rows with the manifest's own ranges), so
    that they are served through the distributions that serve it. False when
    it was filled in already (another process) or is gone.
    """
    row = session.scalar(select(Manifest).where(Manifest.digest == fetched.digest))
    if row is None or row.data != PENDING:
        return False
    parsed = fetched.parsed
    row.data, row.media_type, row.size = fetched.data, parsed.media_type, len(fetched.data)
    row.config_digest = parsed.config.digest if parsed.config else None
    row.subject_digest = parsed.subject.digest if parsed.subject else None
    row.artifact_type = parsed.artifact_type
    blob_ids = _insert_blobs(session, [fetched])
    links = [{"manifest_id": row.id, "position": pos, "blob_id": blob_ids[d.digest]}
             for pos, d in parsed.linked_blobs]
    if links:
        session.execute(insert(q.table(ManifestBlob)), links)
    ids = sorted(set(blob_ids.values()))
    findings = SyncFindings(repository_id=0, remote_id=remote_id,
                            upstream_name=upstream_name, mirror=False, tags={})
    _record_sources(session, findings, set(ids))
    rc = RepositoryContent
    ranges = session.execute(select(rc.repository_id, rc.version_added, rc.version_removed)
                             .where(rc.content_id == row.id)).all()
    rows = [{"repository_id": repo, "content_id": blob, "version_added": added,
             "version_removed": removed}
            for repo, added, removed in ranges for blob in ids]
    for batch in q.chunked(rows, 200):  # 4 parameters a row
        session.execute(insert(q.table(rc)), batch)
    return True


def record_import(session: Session, repository_id: int, tags: dict[str, str],
                  manifests: dict[str, FetchedManifest], untagged: set[str],
                  task_id: str | None) -> RepositoryVersion | None:
    """Write an imported layout as the repository's new version: exactly its tags and
    their closure (a full layout, or an incremental one onto an earlier import, gives
    the same version). `manifests` are those the database does not hold yet; every
    other manifest named is known. No source is recorded: the content came with no
    remote, and its blobs are stored. None when nothing changed."""
    repository = session.get_one(Repository, repository_id)
    children = {c.descriptor.digest for m in manifests.values() for c in m.parsed.children}
    referenced = set(tags.values()) | untagged | set(manifests) | children
    manifest_ids = q.manifest_ids_by_digest(session, sorted(referenced))
    _insert_manifests(session, _ordered(manifests), manifest_ids)
    tag_ids = _tag_ids(session, {name: manifest_ids[d] for name, d in tags.items()})
    top = {manifest_ids[d] for d in (*tags.values(), *untagged)}
    closure, blobs = q.manifest_closure(session, top)
    kinds = {**dict.fromkeys(tag_ids, "tag"), **dict.fromkeys(closure, "manifest"),
             **dict.fromkeys(blobs, "blob")}
    return q.create_version(session, repository, tag_ids | closure | blobs, task_id,
                            kinds=kinds)
