"""Consistency between the database and storage, and the repair done at start-up.

What must always hold: every artifact row has its file with the right size;
every file under `sha256/` has its artifact row; each repository's versions
are numbers in 0..latest, `latest` among them (older ones may have been pruned,
`retain_versions`), with no membership pointing past `latest`; staging holds only
the live downloads of running processes.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from lazyreg.db.content import chunked
from lazyreg.db.engine import Database
from lazyreg.db.models import Artifact, Manifest, Repository, RepositoryContent, RepositoryVersion
from lazyreg.storage.filesystem import FilesystemStore


@dataclass
class CheckReport:
    artifacts_without_file: list[str] = field(default_factory=list)
    files_without_artifact: list[str] = field(default_factory=list)
    size_mismatches: list[str] = field(default_factory=list)
    digest_mismatches: list[str] = field(default_factory=list)
    inconsistent_repositories: list[str] = field(default_factory=list)
    artifacts: int = 0
    files: int = 0
    verified: bool = False

    @property
    def ok(self) -> bool:
        return not (self.artifacts_without_file or self.files_without_artifact
                    or self.size_mismatches or self.digest_mismatches
                    or self.inconsistent_repositories)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}


def _sha256_file(path: Any) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _repository_problems(session: Session) -> list[str]:
    problems = []
    for repo in session.scalars(select(Repository)):
        numbers = sorted(session.scalars(select(RepositoryVersion.number)
                                         .where(RepositoryVersion.repository_id == repo.id)))
        if not numbers or numbers[-1] != repo.latest_version or numbers[0] < 0:
            shown = numbers if len(numbers) <= 20 else [*numbers[:10], "…", *numbers[-5:]]
            problems.append(f"{repo.name}: versions {shown} but latest is {repo.latest_version}")
        rc = RepositoryContent
        beyond = session.scalar(select(func.count()).select_from(rc).where(
            rc.repository_id == repo.id,
            or_(rc.version_added > repo.latest_version,
                rc.version_removed > repo.latest_version)))
        if beyond:
            problems.append(f"{repo.name}: {beyond} content rows belong to unfinished versions")
    return problems


def check(db: Database, store: FilesystemStore, verify: bool = False) -> CheckReport:
    """Compare database and storage; with `verify`, hash every stored file too."""
    report = CheckReport(verified=verify)
    with db.read_session() as session:
        rows = dict(session.execute(select(Artifact.digest, Artifact.size)).all())
        report.inconsistent_repositories = _repository_problems(session)
    files = set(store.iter_digests())
    report.artifacts, report.files = len(rows), len(files)
    report.artifacts_without_file = sorted(set(rows) - files)
    report.files_without_artifact = sorted(files - set(rows))
    for digest in sorted(files & set(rows)):
        path = store.local_path(digest)
        if path.stat().st_size != rows[digest]:
            report.size_mismatches.append(digest)
        elif verify and _sha256_file(path) != digest:
            report.digest_mismatches.append(digest)
    return report


def adopt_orphan_files(db: Database, store: FilesystemStore) -> int:
    """Give an artifact row to each stored file that lacks one.

    A file reaches `sha256/` only after its digest was verified, so one without
    a row is a process killed between the rename and the insert: its bytes are
    good and content-addressed, and adopting them is the cheap, safe repair.
    """
    with db.read_session() as session:
        known = set(session.scalars(select(Artifact.digest)))
    orphans = [d for d in store.iter_digests() if d not in known]
    if not orphans:
        return 0
    with db.write_session() as session:
        manifests: set[str] = set()
        existing: set[str] = set()
        for batch in chunked(orphans):
            manifests.update(session.scalars(
                select(Manifest.digest).where(Manifest.digest.in_(batch))))
            existing.update(session.scalars(
                select(Artifact.digest).where(Artifact.digest.in_(batch))))
        for digest in orphans:
            if digest in existing:
                continue
            session.add(Artifact(digest=digest, size=store.size(digest),
                                 kind="manifest" if digest in manifests else "blob",
                                 location=store.location(digest)))
    return len(orphans)
