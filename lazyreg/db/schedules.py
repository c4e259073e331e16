"""Sync schedules: which process runs a repository's scheduled sync, claimed through the database.

`claim_due` is one write transaction: it takes the schedules that are due
(`SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite's write lock
serializes writers) and moves each one's `next_run` a tick forward, so that a
tick is claimed by exactly one process. A schedule whose last run is still
going (its task `waiting` or `running` in a live process, or claimed moments
ago and not yet recorded) is skipped for that tick; any other gets a new task
id, which the caller then submits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from lazyreg.db.models import Remote, Repository, SyncSchedule, Task
from lazyreg.types import ACTIVE_STATES
from lazyreg.worker import WorkerId

MAX_DUE = 100  # schedules claimed in one transaction (the rest at the next look)
SUBMIT_GRACE = 60.0  # seconds a claimed run may take to have its task row written


@dataclass(frozen=True)
class Due:
    task_id: str
    repository: str
    remote: str
    mirror: bool


@dataclass(frozen=True)
class Skipped:
    repository: str
    task_id: str  # the run still going


def _still_running(session: Session, schedule: SyncSchedule, now: float) -> bool:
    if schedule.task_id is None:
        return False
    task = session.get(Task, schedule.task_id)
    if task is None:  # claimed, its task not written yet (or lost with its process)
        return schedule.claimed is not None and now - schedule.claimed < SUBMIT_GRACE
    if task.state not in ACTIVE_STATES:
        return False
    owner = WorkerId.parse(task.worker or "")
    return owner is None or not owner.known_dead()


def claim_due(session: Session, now: float) -> tuple[list[Due], list[Skipped]]:
    """Claim this tick of every due schedule: the runs to start, and those skipped."""
    rows = session.scalars(
        select(SyncSchedule).where(SyncSchedule.next_run <= now)
        .order_by(SyncSchedule.next_run).limit(MAX_DUE)
        .with_for_update(skip_locked=True)).all()
    due: list[Due] = []
    skipped: list[Skipped] = []
    for schedule in rows:
        # The next tick on the schedule's own grid, never in the past.
        ticks = int((now - schedule.next_run) // schedule.interval) + 1
        schedule.next_run += ticks * schedule.interval
        repository = session.get(Repository, schedule.repository_id)
        remote = session.get(Remote, schedule.remote_id)
        if repository is None or remote is None:
            continue
        if _still_running(session, schedule, now):
            skipped.append(Skipped(repository.name, schedule.task_id or ""))
            continue
        schedule.task_id, schedule.claimed = str(uuid.uuid4()), now
        due.append(Due(schedule.task_id, repository.name, remote.name, schedule.mirror))
    return due, skipped
