"""The task runner reports each task's end, and its log line carries the starting request's id."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from lazyreg.db.engine import Database
from lazyreg.observe.logs import REQUEST_ID, RequestIdFilter
from lazyreg.taskcontext import Params, TaskContext
from lazyreg.tasks.runner import TaskRunner
from lazyreg.worker import WorkerId
from tests.sqlite import fresh_database


class Recorder:
    def __init__(self) -> None:
        self.ended: list[tuple[str, str, float]] = []

    def task_finished(self, kind: str, state: str, seconds: float) -> None:
        self.ended.append((kind, state, seconds))


@pytest.fixture
def db(template: Path, tmp_path: Path) -> Iterator[Database]:
    database = fresh_database(template, tmp_path)
    yield database
    database.dispose()


@pytest.fixture
async def runner(db: Database) -> AsyncIterator[tuple[TaskRunner, Recorder, list[str | None]]]:
    recorder = Recorder()
    tasks = TaskRunner(db, WorkerId.current(), lock_poll=0.01, flush_interval=0.01,
                       observer=recorder)
    inside: list[str | None] = []

    async def works(ctx: TaskContext, params: Params) -> list[str]:
        inside.append(REQUEST_ID.get())
        return []

    async def breaks(ctx: TaskContext, params: Params) -> list[str]:
        raise RuntimeError("upstream on fire")

    tasks.register("works", works)
    tasks.register("breaks", breaks, lock=lambda params: "repository:x")
    yield tasks, recorder, inside
    await tasks.shutdown()


async def test_each_end_is_reported_and_logged_with_the_request_id(
        runner: tuple[TaskRunner, Recorder, list[str | None]],
        caplog: pytest.LogCaptureFixture) -> None:
    tasks, seen, inside = runner
    caplog.set_level(logging.INFO, "lazyreg.tasks.runner")
    caplog.handler.addFilter(RequestIdFilter())
    token = REQUEST_ID.set("req-42")
    try:
        ok = await tasks.submit("works", {})
        bad = await tasks.submit("breaks", {})
    finally:
        REQUEST_ID.reset(token)
    await tasks.wait(ok.id)
    await tasks.wait(bad.id)

    assert inside == ["req-42"]
    assert sorted((kind, state) for kind, state, _ in seen.ended) == [
        ("breaks", "failed"), ("works", "completed")]
    assert all(seconds >= 0 for _, _, seconds in seen.ended)
    lines = {r.getMessage(): r for r in caplog.records if r.name == "lazyreg.tasks.runner"}
    done = next(r for m, r in lines.items() if m.startswith(f"task {ok.id} works completed in"))
    failed = next(r for m, r in lines.items() if m.startswith(f"task {bad.id} breaks failed in"))
    assert done.request_id == failed.request_id == "req-42"  # type: ignore[attr-defined]
    assert failed.levelno == logging.WARNING
    assert failed.getMessage().endswith("RuntimeError: upstream on fire")
