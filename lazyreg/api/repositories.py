"""`repositories/`, their versions (listed, deleted, retained), the tasks on one
repository (`sync/` and `reclaim/`), and its sync schedule (`schedule/`)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from urllib.parse import quote

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from lazyreg.api import paging
from lazyreg.api.http import (
    json_object,
    no_content,
    parse_body,
    parse_int,
    path_name,
    read,
    respond,
    write,
)
from lazyreg.api.lookup import by_name, ensure_unique, referenced, version_row
from lazyreg.api.routing import PREFIX
from lazyreg.api.schemas import (
    Counts,
    Page,
    RepositoryIn,
    RepositoryOut,
    ScheduleIn,
    ScheduleOut,
    SyncIn,
    VersionOut,
)
from lazyreg.api.tasks import to_out as task_out
from lazyreg.db import content as q
from lazyreg.db.models import Remote, Repository, RepositoryVersion, SyncSchedule
from lazyreg.errors import Conflict, InvalidField, NotFound
from lazyreg.space import tasks as space_tasks
from lazyreg.state import state
from lazyreg.sync import task as sync_task

EMPTY = {"tags": 0, "manifests": 0, "blobs": 0}


def to_out(repository: Repository) -> RepositoryOut:
    # Percent-encoded: a pull-through repository's name holds slashes.
    return RepositoryOut(
        name=repository.name, description=repository.description,
        latest_version=repository.latest_version, retain_versions=repository.retain_versions,
        created=repository.created,
        versions_href=f"{PREFIX}/repositories/{quote(repository.name, safe='')}/versions/")


def version_out(version: RepositoryVersion) -> VersionOut:
    return VersionOut(
        number=version.number, created=version.created,
        content_counts=Counts(**version.content_counts), added=Counts(**version.added_counts),
        removed=Counts(**version.removed_counts))


async def create(request: web.Request) -> web.Response:
    body = await parse_body(request, RepositoryIn)

    def insert(session: Session) -> RepositoryOut:
        ensure_unique(session, Repository, body.name)
        repository = Repository(name=body.name, description=body.description, latest_version=0,
                                retain_versions=body.retain_versions)
        session.add(repository)
        session.flush()
        # Version 0 is the empty repository; a distribution may serve it before any sync.
        session.add(RepositoryVersion(repository_id=repository.id, number=0,
                                      content_counts=dict(EMPTY), added_counts=dict(EMPTY),
                                      removed_counts=dict(EMPTY)))
        return to_out(repository)
    return respond(await write(request, insert), status=201)


async def list_(request: web.Request) -> web.Response:
    window = paging.Window.of(request)

    def query(session: Session) -> tuple[int, list[RepositoryOut]]:
        stmt = select(Repository).order_by(Repository.name)
        count, rows = paging.fetch(session, stmt, window)
        return count, [to_out(row[0]) for row in rows]
    count, results = await read(request, query)
    return respond(Page[RepositoryOut](**paging.envelope(request, window, count),
                                       results=results))


async def show(request: web.Request) -> web.Response:
    name = path_name(request)
    return respond(await read(request, lambda s: to_out(by_name(s, Repository, name))))


async def update(request: web.Request) -> web.Response:
    name = path_name(request)
    given = await json_object(request)

    def apply(session: Session) -> RepositoryOut:
        repository = by_name(session, Repository, name)
        current = {"name": repository.name, "description": repository.description,
                   "retain_versions": repository.retain_versions}
        values = RepositoryIn.model_validate({**current, **given})
        ensure_unique(session, Repository, values.name, repository.id)
        repository.name, repository.description = values.name, values.description
        repository.retain_versions = values.retain_versions
        if values.retain_versions:
            q.prune_versions(session, repository, values.retain_versions)
        session.flush()
        return to_out(repository)
    return respond(await write(request, apply))


async def delete(request: web.Request) -> web.Response:
    name = path_name(request)
    # Versions, membership rows and the distributions serving it go by ON DELETE CASCADE;
    # content and artifacts are global and stay.
    await write(request, lambda s: s.delete(by_name(s, Repository, name)))
    return no_content()


async def versions(request: web.Request) -> web.Response:
    name = path_name(request)
    window = paging.Window.of(request)

    def query(session: Session) -> tuple[int, list[VersionOut]]:
        repository = by_name(session, Repository, name)
        stmt = (select(RepositoryVersion)
                .where(RepositoryVersion.repository_id == repository.id)
                .order_by(RepositoryVersion.number.desc()))
        count, rows = paging.fetch(session, stmt, window)
        return count, [version_out(row[0]) for row in rows]
    count, results = await read(request, query)
    return respond(Page[VersionOut](**paging.envelope(request, window, count), results=results))


async def version(request: web.Request) -> web.Response:
    name = path_name(request)
    # Checked before any query: "²".isdigit() is True but int("²") fails, and
    # 20 digits overflow every database's integer column.
    number = parse_int("number", path_name(request, "number"))

    def query(session: Session) -> VersionOut:
        return version_out(version_row(session, by_name(session, Repository, name), number))
    return respond(await read(request, query))


async def delete_version(request: web.Request) -> web.Response:
    """Delete one version: never the latest, nor one a distribution pins (409 naming them)."""
    name = path_name(request)
    number = parse_int("number", path_name(request, "number"))

    def apply(session: Session) -> None:
        repository = by_name(session, Repository, name)
        version_row(session, repository, number)
        if number == repository.latest_version:
            raise Conflict(f"version {number} is the latest version of repository {name!r}:"
                           " it cannot be deleted (a sync or retain_versions replaces it)")
        pinned = q.pinning(session, repository.id, [number]).get(number)
        if pinned:
            raise Conflict(f"version {number} of repository {name!r} is served by"
                           f" distribution{'s' if len(pinned) > 1 else ''} {', '.join(pinned)}:"
                           " pin them to another version or delete them first")
        q.delete_versions(session, repository, [number])
    await write(request, apply)
    return no_content()


async def reclaim(request: web.Request) -> web.Response:
    """Start a task deleting the stored layers of the repository that can be fetched again."""
    name = path_name(request)
    await read(request, lambda s: by_name(s, Repository, name))
    task = await state(request).tasks.submit(space_tasks.RECLAIM, {"repository": name})
    return respond(task_out(task), status=202)


async def sync(request: web.Request) -> web.Response:
    name = path_name(request)
    body = await parse_body(request, SyncIn)

    def check(session: Session) -> None:
        by_name(session, Repository, name)
        remote = referenced(session, Remote, body.remote, "remote")
        if not remote.upstream_name:
            raise InvalidField("remote", f"remote {remote.name!r} has no upstream_name (it serves"
                               " pull-through distributions): give it one to sync from it")
    await read(request, check)
    task = await state(request).tasks.submit(
        sync_task.KIND, sync_task.params(name, body.remote, body.mirror, body.strict))
    return respond(task_out(task), status=202)


def _schedule_out(session: Session, schedule: SyncSchedule) -> ScheduleOut:
    remote = session.get_one(Remote, schedule.remote_id)
    return ScheduleOut(remote=remote.name, mirror=schedule.mirror,
                       sync_interval=schedule.interval,
                       next_run=datetime.fromtimestamp(schedule.next_run, UTC),
                       last_task=schedule.task_id)


def _schedule_of(session: Session, name: str) -> SyncSchedule:
    """The schedule of repository `name`; NotFound for the repository or its schedule."""
    schedule = session.get(SyncSchedule, by_name(session, Repository, name).id)
    if schedule is None:
        raise NotFound("schedule of repository", name)
    return schedule


async def show_schedule(request: web.Request) -> web.Response:
    name = path_name(request)
    return respond(await read(request, lambda s: _schedule_out(s, _schedule_of(s, name))))


async def set_schedule(request: web.Request) -> web.Response:
    """Set (or, with `sync_interval` null, remove) the sync the server runs itself."""
    name = path_name(request)
    body = await parse_body(request, ScheduleIn)

    def apply(session: Session) -> ScheduleOut | None:
        repository = by_name(session, Repository, name)
        remote = referenced(session, Remote, body.remote, "remote")
        if not remote.upstream_name:
            raise InvalidField("remote", f"remote {remote.name!r} has no upstream_name: give"
                               " it one to sync from it")
        schedule = session.get(SyncSchedule, repository.id)
        if body.sync_interval is None:
            if schedule is not None:
                session.delete(schedule)
            return None
        if schedule is None:
            schedule = SyncSchedule(repository_id=repository.id)
            session.add(schedule)
        schedule.remote_id, schedule.mirror = remote.id, body.mirror
        schedule.interval = body.sync_interval
        schedule.next_run = time.time() + body.sync_interval  # the first run, one interval on
        session.flush()
        return _schedule_out(session, schedule)
    out = await write(request, apply)
    return no_content() if out is None else respond(out)


async def delete_schedule(request: web.Request) -> web.Response:
    name = path_name(request)

    await write(request, lambda s: s.delete(_schedule_of(s, name)))
    return no_content()
