"""Queries over repository content: what a version holds, writing a new version,
and pruning old ones."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from sqlalchemy import Select, and_, delete, or_, select
from sqlalchemy.orm import Session

from lazyreg.db.models import (
    Blob,
    Content,
    Distribution,
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


def in_version(repository_id: int, number: int) -> Select[tuple[int]]:
    """The content ids of repository version `number`: one indexed range query."""
    rc = RepositoryContent
    return select(rc.content_id).where(
        rc.repository_id == repository_id,
        rc.version_added <= number,
        or_(rc.version_removed.is_(None), rc.version_removed > number),
    )


def version_content_ids(session: Session, repository_id: int, number: int) -> set[int]:
    return set(session.scalars(in_version(repository_id, number)))


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
    counts = {"tags": 0, "manifests": 0, "blobs": 0}
    for batch in chunked(list(content_ids)):
        for kind in session.scalars(select(Content.kind).where(Content.id.in_(batch))):
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
    session: Session, repository: Repository, content_ids: set[int], task_id: str | None = None
) -> RepositoryVersion | None:
    """Write version latest+1 holding exactly `content_ids`; None if nothing changed.

    A repository with `retain_versions` then keeps only that many (`prune_versions`).
    """
    current_number = repository.latest_version
    current = version_content_ids(session, repository.id, current_number)
    added = content_ids - current
    removed = current - content_ids
    if not added and not removed:
        return None
    number = current_number + 1
    rc = RepositoryContent
    for batch in chunked(sorted(removed)):
        session.query(rc).filter(
            rc.repository_id == repository.id,
            rc.content_id.in_(batch),
            rc.version_removed.is_(None),
        ).update({rc.version_removed: number}, synchronize_session=False)
    session.add_all(
        rc(repository_id=repository.id, content_id=cid, version_added=number)
        for cid in sorted(added)
    )
    version = RepositoryVersion(
        repository_id=repository.id,
        number=number,
        content_counts=count_by_kind(session, content_ids),
        added_counts=count_by_kind(session, added),
        removed_counts=count_by_kind(session, removed),
        task_id=task_id,
    )
    session.add(version)
    repository.latest_version = number
    session.flush()
    if repository.retain_versions:
        prune_versions(session, repository, repository.retain_versions)
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


def tags_in_version(session: Session, repository_id: int, number: int) -> Select[tuple[str, int]]:
    return select(Tag.name, Tag.manifest_id).where(Tag.id.in_(in_version(repository_id, number)))


def prune_versions(session: Session, repository: Repository, keep: int) -> list[int]:
    """Delete all but the newest `keep` versions of `repository`; the numbers deleted.

    A version that a distribution pins is kept too, whatever its age. The
    membership rows that only deleted versions used go with them, and every
    remaining version still answers `in_version` exactly as before: a row is
    kept when its range [added, removed) holds a remaining version. Content and
    artifacts are global and stay (orphan cleanup is another job). Afterwards
    the version numbers are a subset of 0..latest, and latest is among them.
    """
    if keep < 1:
        raise ValueError("a repository keeps at least its latest version")
    rv = RepositoryVersion
    numbers = list(session.scalars(select(rv.number).where(rv.repository_id == repository.id)
                                   .order_by(rv.number.desc())))
    if len(numbers) <= keep:
        return []
    window_start = numbers[keep - 1]  # the oldest version in the window of the newest `keep`
    pinned = set(session.scalars(
        select(rv.number).join(Distribution, Distribution.repository_version_id == rv.id)
        .where(rv.repository_id == repository.id, rv.number < window_start)))
    doomed = [n for n in numbers[keep:] if n not in pinned]
    if not doomed:
        return []
    for batch in chunked(doomed):
        session.execute(delete(rv).where(rv.repository_id == repository.id,
                                         rv.number.in_(batch)))
    # Every row whose range reaches into the window holds a version of it (versions
    # after window_start are newer than the row's start). A row that ended at or
    # before the window survives only through a pinned version inside its range.
    rc = RepositoryContent
    ended = [rc.repository_id == repository.id, rc.version_removed.is_not(None),
             rc.version_removed <= window_start]
    for batch in chunked(sorted(pinned), 300):  # 2 parameters each
        ended.append(~or_(*(and_(rc.version_added <= p, rc.version_removed > p)
                            for p in batch)))
    session.execute(delete(rc).where(*ended))
    session.flush()
    return sorted(doomed)
