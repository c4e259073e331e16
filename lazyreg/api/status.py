"""`status/`: version, backends, what is stored and how much is going on."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import lazyreg
from lazyreg.api.artifacts import summary
from lazyreg.api.http import query_choice, read, respond
from lazyreg.api.routing import PREFIX
from lazyreg.api.schemas import (
    ArtifactSummary,
    CacheStatus,
    CheckOut,
    StatusCounts,
    StatusOut,
    StorageStatus,
)
from lazyreg.api.tasks import to_out as task_out
from lazyreg.check import VERIFY
from lazyreg.check import check as run_check
from lazyreg.db.models import Distribution, Remote, Repository, Task
from lazyreg.db.space import stored_bytes
from lazyreg.errors import InvalidField
from lazyreg.state import AppState, state


async def _cache(app: AppState) -> CacheStatus:
    totals = await app.services.db.read(stored_bytes)
    stats = app.space.stats
    last = stats.last_finished
    return CacheStatus(
        max_bytes=app.services.settings.max_cache_bytes,
        evictable_bytes=totals.evictable_bytes, evictable_count=totals.evictable_count,
        kept_bytes=totals.kept_bytes, kept_count=totals.kept_count, evicting=stats.running,
        evicted_blobs=stats.blobs, evicted_bytes=stats.bytes,
        last_eviction=datetime.fromtimestamp(last, UTC) if last is not None else None)


def _counts(session: Session) -> tuple[StatusCounts, ArtifactSummary]:
    def count(model: type[Remote] | type[Repository] | type[Distribution]) -> int:
        return session.scalar(select(func.count()).select_from(model)) or 0
    running = session.scalar(select(func.count()).select_from(Task)
                             .where(Task.state == "running")) or 0
    counts = StatusCounts(remotes=count(Remote), repositories=count(Repository),
                          distributions=count(Distribution), tasks_running=running)
    return counts, summary(session)


async def show(request: web.Request) -> web.Response:
    app = state(request)
    services = app.services
    try:
        total, free = await services.store.capacity()
    except OSError:
        total = free = None  # storage unreachable: the status still answers
    counts, artifacts = await read(request, _counts)
    return respond(StatusOut(
        version=lazyreg.__version__,
        database="sqlite" if services.db.is_sqlite else "postgresql",
        storage=StorageStatus(path=str(services.store), total_bytes=total, free_bytes=free),
        artifacts=artifacts, cache=await _cache(app), counts=counts))


async def check(request: web.Request) -> web.Response:
    """Compare database and storage (files stat'ed, not read: hashing is `verify`)."""
    services = state(request).services
    if query_choice(request, "verify", ("true", "false")) == "true":
        raise InvalidField("verify", f"hashing every stored file runs as a task, for admins:"
                           f" POST {PREFIX}/check/verify/")
    report = await run_check(services.db, services.store)
    return respond(CheckOut(**report.as_dict()))


async def verify(request: web.Request) -> web.Response:
    """Start the task that hashes every stored file; while one runs, answer that one (200)
    rather than start another (202)."""
    task, started = await state(request).tasks.submit_once(VERIFY, {})
    return respond(task_out(task), status=202 if started else 200)
