"""The task runner: registered kinds, task rows, lock keys across processes, recovery, cancel.

A `TaskRunner` stands for one server process (its `WorkerId`); task bodies
here are small coroutines that wait for the test's signal.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from lazyreg.db.engine import Database
from lazyreg.db.models import Task, utcnow
from lazyreg.taskcontext import Params, TaskContext
from lazyreg.tasks.runner import TaskRunner, UnknownTaskKind
from lazyreg.worker import WorkerId
from tests.sqlite import fresh_database

T = TypeVar("T")
WAIT = 10.0
ME = WorkerId.current()


@pytest.fixture
def db(template: Path, tmp_path: Path) -> Iterator[Database]:
    database = fresh_database(template, tmp_path)
    yield database
    database.dispose()


@pytest.fixture
async def runner(db: Database) -> AsyncIterator[TaskRunner]:
    tasks = TaskRunner(db, ME, lock_poll=0.01, flush_interval=0.01)
    yield tasks
    await tasks.shutdown()


async def within(aw: Awaitable[T]) -> T:
    async with asyncio.timeout(WAIT):
        return await aw


async def row(db: Database, task_id: str) -> Task:
    return await db.read(lambda s: s.get_one(Task, task_id))


async def until_state(db: Database, task_id: str, state: str) -> Task:
    async with asyncio.timeout(WAIT):
        while (task := await row(db, task_id)).state != state:
            await asyncio.sleep(0.01)
    return task


class Gate:
    """A task body that records its params, reports progress, and waits to be let go."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.started = asyncio.Event()
        self.go = asyncio.Event()
        self.seen: list[Params] = []
        self.fail = fail

    async def __call__(self, ctx: TaskContext, params: Params) -> list[str]:
        self.seen.append(params)
        ctx.progress.add_total("items", 3)
        ctx.progress.advance("items")
        ctx.warnings.append("item x skipped: https://user:secret@example.com/ refused")
        self.started.set()
        await self.go.wait()
        if self.fail is not None:
            raise self.fail
        ctx.progress.message = "did it"
        return [f"things/{params['name']}/"]


def dead_worker() -> WorkerId:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return WorkerId(ME.host, proc.pid)


async def test_a_registered_kind_runs_with_its_params(db: Database,
                                                      runner: TaskRunner) -> None:
    gate = Gate()
    runner.register("thing", gate)
    assert "thing" in runner.kinds
    task = await runner.submit("thing", {"name": "a"})
    assert task.state == "waiting" and task.kind == "thing" and task.params == {"name": "a"}
    await within(gate.started.wait())
    running = await until_state(db, task.id, "running")
    assert running.started is not None and running.worker == str(ME)
    # Progress reaches the row while the task runs (flushed every `flush_interval`).
    async with asyncio.timeout(WAIT):
        while (await row(db, task.id)).progress.get("items") != {"done": 1, "total": 3}:
            await asyncio.sleep(0.01)
    gate.go.set()
    await within(runner.wait(task.id))
    done = await row(db, task.id)
    assert done.state == "completed" and done.error is None and done.finished is not None
    assert done.created_resources == ["things/a/"]
    assert done.progress == {"items": {"done": 1, "total": 3}, "message": "did it"}
    assert done.warnings == ["item x skipped: https://***@example.com/ refused"]
    assert gate.seen == [{"name": "a"}]


async def test_a_kind_registers_once_and_an_unknown_kind_writes_no_row(
        db: Database, runner: TaskRunner) -> None:
    runner.register("thing", Gate())
    with pytest.raises(ValueError, match="registered already"):
        runner.register("thing", Gate())
    with pytest.raises(UnknownTaskKind):
        await runner.submit("nothing", {})
    assert await db.read(lambda s: s.query(Task).count()) == 0


async def test_a_failing_body_fails_its_task_with_a_redacted_error(
        db: Database, runner: TaskRunner) -> None:
    gate = Gate(fail=RuntimeError("upstream https://u:hunter2@example.com/ refused"))
    runner.register("thing", gate)
    task = await runner.submit("thing", {"name": "a"})
    gate.go.set()
    await within(runner.wait(task.id))
    failed = await row(db, task.id)
    assert failed.state == "failed"
    assert failed.error == "RuntimeError: upstream https://***@example.com/ refused"
    assert failed.warnings and "secret" not in failed.warnings[0]  # kept, redacted


async def test_tasks_with_one_lock_key_run_one_at_a_time_in_order(
        db: Database, runner: TaskRunner) -> None:
    gates = {"a": Gate(), "b": Gate(), "other": Gate()}

    async def body(ctx: TaskContext, params: Params) -> list[str]:
        return await gates[params["name"]](ctx, params)
    runner.register("thing", body, lock=lambda p: "repo:x" if p["name"] != "other" else "repo:y")
    first = await runner.submit("thing", {"name": "a"})
    second = await runner.submit("thing", {"name": "b"})
    other = await runner.submit("thing", {"name": "other"})
    await within(gates["a"].started.wait())
    await within(gates["other"].started.wait())  # another key: not held up
    await asyncio.sleep(0.05)  # time for `b` to start, if it could
    assert not gates["b"].started.is_set()
    assert (await row(db, second.id)).state == "waiting"
    assert (await row(db, first.id)).lock_key == "repo:x"
    gates["a"].go.set()
    await within(gates["b"].started.wait())
    gates["b"].go.set()
    gates["other"].go.set()
    for task in (first, second, other):
        await within(runner.wait(task.id))
        assert (await row(db, task.id)).state == "completed"


async def test_a_lock_key_held_by_another_live_process_waits_for_it(
        db: Database, runner: TaskRunner) -> None:
    other = WorkerId(ME.host, os.getppid())  # alive: the process that runs the tests

    def theirs(worker: WorkerId) -> Any:
        def insert(session: Any) -> str:
            task = Task(id=f"theirs-{worker.pid}", kind="thing", state="running", params={},
                        lock_key="repo:x", worker=str(worker), progress={},
                        created_resources=[], warnings=[], created=utcnow())
            session.add(task)
            return task.id
        return insert
    their_id = await db.write(theirs(other))
    await db.write(theirs(dead_worker()))  # a dead process's task holds nothing
    gate = Gate()
    runner.register("thing", gate, lock=lambda p: "repo:x")
    task = await runner.submit("thing", {"name": "a"})
    await asyncio.sleep(0.1)  # ten looks at the other process's task
    assert not gate.started.is_set()
    assert (await row(db, task.id)).state == "waiting"

    def finish(session: Any) -> None:
        session.get_one(Task, their_id).state = "completed"
    await db.write(finish)
    await within(gate.started.wait())
    gate.go.set()
    await within(runner.wait(task.id))


async def test_recovery_fails_what_dead_processes_left_and_nothing_else(db: Database) -> None:
    dead = dead_worker()
    cases = {  # id: (worker, state, failed after recovery)
        "dead-running": (str(dead), "running", True),
        "dead-waiting": (str(dead), "waiting", True),
        "dead-completed": (str(dead), "completed", False),
        "live-running": (str(ME), "running", False),
        "other-host": ("elsewhere-12", "running", False),  # judged by its own host
        "no-worker": (None, "running", True),
    }

    def insert(session: Any) -> None:
        for task_id, (worker, state, _) in cases.items():
            session.add(Task(id=task_id, kind="sync", state=state, params={"repository": "r"},
                             worker=worker, progress={}, created_resources=[], warnings=[],
                             created=utcnow()))
    await db.write(insert)
    assert await TaskRunner(db, ME).recover() == 3
    for task_id, (_, state, fails) in cases.items():
        task = await row(db, task_id)
        assert task.state == ("failed" if fails else state), task_id
        assert task.params == {"repository": "r"}  # kept, to run it again
        if fails:
            assert task.error is not None and "interrupted" in task.error


async def test_shutdown_cancels_running_and_waiting_tasks(db: Database) -> None:
    runner = TaskRunner(db, ME, lock_poll=0.01, flush_interval=0.01)
    gate = Gate()
    runner.register("thing", gate, lock=lambda p: "repo:x")
    running = await runner.submit("thing", {"name": "a"})
    waiting = await runner.submit("thing", {"name": "b"})
    await within(gate.started.wait())
    await within(runner.shutdown())
    for task_id in (running.id, waiting.id):
        task = await row(db, task_id)
        assert task.state == "canceled" and task.error == "canceled"
        assert task.finished is not None
    assert (await row(db, running.id)).warnings  # what it had skipped is kept
    assert len(gate.seen) == 1  # the waiting one never ran


async def test_a_progress_write_in_flight_cannot_land_after_the_final_one(db: Database) -> None:
    runner = TaskRunner(db, ME, flush_interval=0.01)
    flushing = asyncio.Event()
    landed = threading.Event()

    async def slow_flush(task_id: str, **values: Any) -> None:
        if set(values) != {"progress"}:
            return await update(task_id, **values)
        flushing.set()

        def late_write() -> None:  # a write whose thread goes on whatever its awaiter does
            time.sleep(0.2)
            with db.write_session() as s:
                s.get_one(Task, task_id).progress = values["progress"]
            landed.set()
        await asyncio.to_thread(late_write)
    update = runner._update
    runner._update = slow_flush  # type: ignore[method-assign]

    async def body(ctx: TaskContext, params: Params) -> list[str]:
        ctx.progress.message = "working"
        await flushing.wait()  # a flush of "working" is on its way
        ctx.progress.message = "finished"
        return []
    runner.register("thing", body)
    task = await runner.submit("thing", {})
    await within(runner.wait(task.id))
    assert await within(asyncio.to_thread(landed.wait, WAIT))
    done = await row(db, task.id)
    assert done.state == "completed" and done.progress == {"message": "finished"}
