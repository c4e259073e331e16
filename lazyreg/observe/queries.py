"""What the status page and `/metrics` read from the database: a few bounded queries.

Every list is cut at a fixed number of rows (counts say how many there are),
so a snapshot costs the same with ten repositories or fifty thousand.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from lazyreg.db.models import (
    Artifact,
    Distribution,
    Remote,
    Repository,
    RepositoryVersion,
    Task,
)

KINDS = ("manifest", "config", "layer")
LIST_ROWS = 20  # repositories and distributions shown
TASK_ROWS = 10  # recent tasks shown
WARNINGS_SHOWN = 3  # per task
TEXT_CAP = 300  # characters of an error or a warning shown


def clip(text: str, cap: int = TEXT_CAP) -> str:
    return text if len(text) <= cap else text[: cap - 1] + "…"


def stored_by_kind(session: Session) -> dict[str, tuple[int, int]]:
    """(count, bytes) of the stored artifacts of each kind; every kind of KINDS present."""
    found = {kind: (0, 0) for kind in KINDS}
    rows = session.execute(select(Artifact.kind, func.count(),
                                  func.coalesce(func.sum(Artifact.size), 0))
                           .group_by(Artifact.kind))
    for kind, count, size in rows:
        found[kind] = (int(count), int(size))
    return found


@dataclass(frozen=True)
class RepositoryRow:
    name: str
    latest_version: int
    description: str


@dataclass(frozen=True)
class DistributionRow:
    name: str
    base_path: str
    serves: str
    private: bool


@dataclass(frozen=True)
class TaskRow:
    id: str
    kind: str
    state: str
    subject: str  # what it works on (a sync's repository), or ""
    created: datetime | None
    started: datetime | None
    finished: datetime | None
    error: str
    warnings: tuple[str, ...]  # the first WARNINGS_SHOWN, clipped
    warning_count: int


@dataclass(frozen=True)
class Snapshot:
    remotes: int
    repositories: int
    distributions: int
    repository_rows: list[RepositoryRow]
    distribution_rows: list[DistributionRow]
    task_rows: list[TaskRow]
    stored: dict[str, tuple[int, int]]


def _count(session: Session, model: type[Remote] | type[Repository] | type[Distribution]
           ) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def _distributions(session: Session) -> list[DistributionRow]:
    served = aliased(Repository)
    pinned_repo = aliased(Repository)
    rows = session.execute(
        select(Distribution.name, Distribution.base_path, Distribution.private,
               served.name, pinned_repo.name, RepositoryVersion.number)
        .outerjoin(served, served.id == Distribution.repository_id)
        .outerjoin(RepositoryVersion, RepositoryVersion.id == Distribution.repository_version_id)
        .outerjoin(pinned_repo, pinned_repo.id == RepositoryVersion.repository_id)
        .order_by(Distribution.name).limit(LIST_ROWS))
    out = []
    for name, base_path, private, repo, pinned, number in rows:
        if number is not None:
            serves = f"{pinned or repo} version {number}"
        else:
            serves = f"{repo} (latest)" if repo else ""
        out.append(DistributionRow(name, base_path, serves, bool(private)))
    return out


def _tasks(session: Session) -> list[TaskRow]:
    rows = session.scalars(select(Task).order_by(Task.created.desc(), Task.id)
                           .limit(TASK_ROWS))
    out = []
    for task in rows:
        params = task.params if isinstance(task.params, dict) else {}
        subject = params.get("repository")
        warnings = task.warnings if isinstance(task.warnings, list) else []
        out.append(TaskRow(
            id=task.id, kind=task.kind, state=task.state,
            subject=clip(subject) if isinstance(subject, str) else "",
            created=task.created, started=task.started, finished=task.finished,
            error=clip(task.error or ""),
            warnings=tuple(clip(str(w)) for w in warnings[:WARNINGS_SHOWN]),
            warning_count=len(warnings)))
    return out


def snapshot(session: Session) -> Snapshot:
    repositories = [RepositoryRow(name, version, clip(description or "", 120))
                    for name, version, description in session.execute(
                        select(Repository.name, Repository.latest_version,
                               Repository.description)
                        .order_by(Repository.name).limit(LIST_ROWS))]
    return Snapshot(
        remotes=_count(session, Remote), repositories=_count(session, Repository),
        distributions=_count(session, Distribution), repository_rows=repositories,
        distribution_rows=_distributions(session), task_rows=_tasks(session),
        stored=stored_by_kind(session))
