"""Queries over repository content: what a version holds, and writing a new version."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TypeVar

from sqlalchemy import Select, insert, or_, select, update
from sqlalchemy.orm import Session

from lazyreg.db.models import (
    Blob,
    Content,
    Manifest,
    ManifestBlob,
    ManifestChild,
    Repository,
    RepositoryContent,
    RepositoryVersion,
    Tag,
)

T = TypeVar("T")
CHUNK = 900  # stays under every database's limit of bound parameters


def chunked(items: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def in_version(repository_id: int, number: int) -> Select[int]:
    """The content ids of repository version `number`: one indexed range query."""
    rc = RepositoryContent
    return select(rc.content_id).where(
        rc.repository_id == repository_id,
        rc.version_added <= number,
        or_(rc.version_removed.is_(None), rc.version_removed > number),
    )


def version_content_ids(session: Session, repository_id: int, number: int) -> set[int]:
    return set(session.scalars(in_version(repository_id, number)))


def version_contents(session: Session, repository_id: int, number: int) -> dict[int, str]:
    """The content of a version: id -> kind (`tag`, `manifest` or `blob`), in one query."""
    ids = in_version(repository_id, number).subquery()
    return dict(session.execute(
        select(Content.id, Content.kind).join(ids, ids.c.content_id == Content.id)).all())


def manifest_closure(session: Session, manifest_ids: Iterable[int]) -> tuple[set[int], set[int]]:
    """Manifests and blobs reachable from `manifest_ids`: lists, their children to any
    depth (each manifest visited once, so a cycle cannot loop), and their blobs."""
    manifests = set(manifest_ids)
    frontier = set(manifests)
    while frontier:
        found: set[int] = set()
        for batch in chunked(sorted(frontier)):
            found.update(session.scalars(
                select(ManifestChild.child_id).where(ManifestChild.list_id.in_(batch))))
        frontier = found - manifests
        manifests |= frontier
    blobs: set[int] = set()
    for batch in chunked(sorted(manifests)):
        blobs.update(
            session.scalars(select(ManifestBlob.blob_id).where(ManifestBlob.manifest_id.in_(batch)))
        )
    return manifests, blobs


def count_by_kind(session: Session, content_ids: Iterable[int]) -> dict[str, int]:
    return _counts(kinds_of(session, content_ids).values())


def kinds_of(session: Session, content_ids: Iterable[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for batch in chunked(list(content_ids)):
        out.update(session.execute(
            select(Content.id, Content.kind).where(Content.id.in_(batch))).all())
    return out


def _counts(kinds: Iterable[str]) -> dict[str, int]:
    counts = {"tags": 0, "manifests": 0, "blobs": 0}
    for kind in kinds:
        counts[kind + "s"] += 1
    return counts


def tag_names(session: Session, tag_ids: Iterable[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for batch in chunked(list(tag_ids)):
        out.update(
            session.execute(select(Tag.id, Tag.name).where(Tag.id.in_(batch))).all()
        )
    return out


def create_version(
    session: Session, repository: Repository, content_ids: set[int], task_id: str | None = None,
    *, kinds: Mapping[int, str] | None = None, current: Mapping[int, str] | None = None,
) -> RepositoryVersion | None:
    """Write version latest+1 holding exactly `content_ids`; None if nothing changed.

    `kinds` may give the kind of some ids, and `current` the content of the
    latest version as `version_contents` reads it: what is given is not read again.
    """
    current_number = repository.latest_version
    if current is None:
        current = version_contents(session, repository.id, current_number)
    added = content_ids - current.keys()
    removed = current.keys() - content_ids
    if not added and not removed:
        return None
    known = {**current, **(kinds or {})}
    missing = [i for i in added if i not in known]
    if missing:
        known.update(kinds_of(session, missing))
    number = current_number + 1
    rc = RepositoryContent
    for batch in chunked(sorted(removed)):
        session.execute(update(rc).where(
            rc.repository_id == repository.id,
            rc.content_id.in_(batch),
            rc.version_removed.is_(None),
        ).values(version_removed=number))
    for batch in chunked(sorted(added), 250):  # 3 parameters a row
        session.execute(insert(rc), [
            {"repository_id": repository.id, "content_id": cid, "version_added": number}
            for cid in batch])
    version = RepositoryVersion(
        repository_id=repository.id,
        number=number,
        content_counts=_counts(known[i] for i in content_ids),
        added_counts=_counts(known[i] for i in added),
        removed_counts=_counts(current[i] for i in removed),
        task_id=task_id,
    )
    session.add(version)
    repository.latest_version = number
    session.flush()
    return version


def blob_ids_by_digest(session: Session, digests: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for batch in chunked(list(digests)):
        out.update(
            session.execute(select(Blob.digest, Blob.id).where(Blob.digest.in_(batch))).all())
    return out


def manifest_ids_by_digest(session: Session, digests: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for batch in chunked(list(digests)):
        out.update(
            session.execute(select(Manifest.digest, Manifest.id).where(Manifest.digest.in_(batch)))
            .all()
        )
    return out


def tags_in_version(session: Session, repository_id: int, number: int) -> Select[str, int]:
    return select(Tag.name, Tag.manifest_id).where(Tag.id.in_(in_version(repository_id, number)))
