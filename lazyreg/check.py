"""Consistency between the database and storage, and the repair done at start-up.

What must always hold: every artifact row has its file with the right size;
every stored blob has its artifact row; each repository's versions
are numbers in 0..latest, `latest` among them (older ones may have been deleted,
`retain_versions`), with no membership pointing past `latest`; staging holds only
the live downloads of running processes.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from lazyreg.db import leases
from lazyreg.db.artifacts import NewArtifact, record_artifacts, stored_digests
from lazyreg.db.content import chunked
from lazyreg.db.engine import Database
from lazyreg.db.models import (
    Artifact,
    Blob,
    Manifest,
    ManifestBlob,
    Repository,
    RepositoryContent,
    RepositoryVersion,
    Task,
)
from lazyreg.storage.base import BlobStore
from lazyreg.storage.layout import split_digest
from lazyreg.taskcontext import Params, Progress, TaskContext, TaskKinds
from lazyreg.worker import WorkerId

HASH_CHUNK = 1024 * 1024
VERIFY = "verify"  # the task kind
MAX_LISTED = 1000  # problems a verify task lists as warnings


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

    def problems(self) -> list[str]:
        """Every problem as `<kind>: <what>`, kinds in the order of the fields."""
        return [f"{kind}: {item}" for kind, items in asdict(self).items()
                if isinstance(items, list) for item in items]


async def _digest_of_stored(store: BlobStore, digest: str) -> str | None:
    """What a stored blob hashes to, read through the storage interface; None if it is gone."""
    reader = await store.open(digest)
    if reader is None:
        return None
    try:
        algorithm, _ = split_digest(digest)
        h = hashlib.new(algorithm)
        offset, size = 0, reader.landed()
        while offset < size:
            chunk = await reader.read(offset, min(HASH_CHUNK, size - offset))
            if not chunk:
                break
            await asyncio.to_thread(h.update, chunk)
            offset += len(chunk)
        return f"{algorithm}:{h.hexdigest()}"
    finally:
        reader.close()


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


async def check(db: Database, store: BlobStore, verify: bool = False,
                progress: Progress | None = None) -> CheckReport:
    """Compare database and storage; with `verify`, hash every stored blob too (counted
    on `progress`: files done of total)."""
    report = CheckReport(verified=verify)
    progress = progress or Progress()

    def load(session: Session) -> tuple[dict[str, int], list[str]]:
        rows = dict(session.execute(select(Artifact.digest, Artifact.size)).all())
        return rows, _repository_problems(session)
    rows, report.inconsistent_repositories = await db.read(load)
    files = {digest async for digest in store.iter_digests()}
    report.artifacts, report.files = len(rows), len(files)
    report.artifacts_without_file = sorted(set(rows) - files)
    report.files_without_artifact = sorted(files - set(rows))
    both = sorted(files & set(rows))
    progress.add_total("files", len(both))
    for digest in both:
        if await store.stat(digest) != rows[digest]:
            report.size_mismatches.append(digest)
        elif verify and await _digest_of_stored(store, digest) != digest:
            report.digest_mismatches.append(digest)
        progress.advance("files")
    return report


def _verified_meanwhile(session: Session, task_id: str) -> str | None:
    """Another verify task that ran to its end after this one was asked for, if any."""
    created = session.scalar(select(Task.created).where(Task.id == task_id))
    return session.scalar(select(Task.id).where(
        Task.kind == VERIFY, Task.state == "completed", Task.id != task_id,
        Task.started >= created).limit(1)) if created is not None else None


def register_verify(kinds: TaskKinds, db: Database, store: BlobStore) -> None:
    """The task kind `verify`: the check with every stored file hashed, one at a time
    across processes (lock key `verify`: it reads all of storage). Problems are the
    task's warnings, `<kind>: <digest>`, at most MAX_LISTED of them."""
    async def run(ctx: TaskContext, _params: Params) -> list[str]:
        earlier = await db.read(lambda s: _verified_meanwhile(s, ctx.task_id))
        if earlier is not None:
            # Two nodes asked at the same instant (see `submit_once`): one hash of storage.
            ctx.progress.message = f"verified meanwhile by task {earlier}: see its warnings"
            return []
        report = await check(db, store, verify=True, progress=ctx.progress)
        problems = report.problems()
        ctx.warnings.extend(problems[:MAX_LISTED])
        if len(problems) > MAX_LISTED:
            ctx.warnings.append(f"… {len(problems) - MAX_LISTED} more problems")
        found = f"{len(problems)} problems" if problems else "no problem"
        ctx.progress.message = (f"verified {report.artifacts} artifacts and {report.files}"
                                f" stored files: {found}")
        return []
    kinds.register(VERIFY, run, lock=lambda _p: VERIFY)


def _kinds(session: Session, digests: list[str]) -> dict[str, str]:
    """The artifact kind of each digest, as its content rows say; "blob" when none does."""
    kinds = dict.fromkeys(digests, "blob")
    for batch in chunked(digests):
        for digest in session.scalars(select(Blob.digest).where(Blob.digest.in_(batch))):
            kinds[digest] = "layer"
        for digest in session.scalars(
                select(Blob.digest).join(ManifestBlob, ManifestBlob.blob_id == Blob.id)
                .where(Blob.digest.in_(batch), ManifestBlob.position == -1)):
            kinds[digest] = "config"
        for digest in session.scalars(select(Manifest.digest).where(Manifest.digest.in_(batch))):
            kinds[digest] = "manifest"
    return kinds


async def adopt_orphan_files(db: Database, store: BlobStore,
                             me: WorkerId | None = None) -> int:
    """Give an artifact row to each stored blob that lacks one.

    A blob reaches storage only after its digest was verified, so one without
    a row is a process killed between the commit and the insert, or a deletion
    killed between the row and the file (`lazyreg.space.deletion`): its bytes
    are good and content-addressed, and adopting them is the cheap, safe
    repair; a cleanup deletes them again if they are still not wanted. A blob
    whose lease another live process holds is left alone: that process is
    deleting it or about to record it. The kind comes from the content rows.
    """
    me = me or WorkerId.current()
    listed = [digest async for digest in store.iter_digests()]
    known = await db.read(lambda s: stored_digests(s, listed))
    orphans = [d for d in listed if d not in known]
    if not orphans:
        return 0

    def busy(session: Session) -> set[str]:
        keys = {leases.blob_lease(d): d for d in orphans}
        return {keys[k] for k in leases.held_by_others(session, list(keys), me)}
    held = await db.read(busy)
    orphans = [d for d in orphans if d not in held]
    kinds = await db.read(lambda s: _kinds(s, orphans))
    found = []
    for digest in orphans:
        size = await store.stat(digest)
        if size is not None:
            found.append(NewArtifact(digest, size, kinds[digest], store.location(digest)))
    await db.write(lambda s: record_artifacts(s, found))
    return len(found)
