"""`tasks/`: what long operations did and are doing, newest first."""

from __future__ import annotations

from typing import cast, get_args

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from lazyreg.api import paging
from lazyreg.api.http import path_name, query_choice, read, respond
from lazyreg.api.schemas import Page, TaskOut, TaskState
from lazyreg.db.models import Task
from lazyreg.errors import NotFound

STATES: tuple[str, ...] = get_args(TaskState)


def to_out(task: Task) -> TaskOut:
    return TaskOut(
        id=task.id, kind=task.kind,
        state=cast(TaskState, task.state),  # the runner writes only these
        params=task.params or {}, progress=task.progress or {}, error=task.error,
        created=task.created, started=task.started, finished=task.finished,
        created_resources=task.created_resources or [], warnings=task.warnings or [])


async def list_(request: web.Request) -> web.Response:
    window = paging.Window.of(request)
    wanted = query_choice(request, "state", STATES)

    def query(session: Session) -> tuple[int, list[TaskOut]]:
        stmt = select(Task).order_by(Task.created.desc(), Task.id)
        if wanted:
            stmt = stmt.where(Task.state == wanted)
        count, rows = paging.fetch(session, stmt, window)
        return count, [to_out(row[0]) for row in rows]
    count, results = await read(request, query)
    return respond(Page[TaskOut](**paging.envelope(request, window, count), results=results))


async def show(request: web.Request) -> web.Response:
    task_id = path_name(request, "id")

    def query(session: Session) -> TaskOut:
        task = session.get(Task, task_id)
        if task is None:
            raise NotFound("task", task_id)
        return to_out(task)
    return respond(await read(request, query))
