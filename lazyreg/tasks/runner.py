"""Run long operations in the background and record them as task rows.

A task is `waiting` until it holds its lock key (one sync per repository at a
time, across processes), `running` while its coroutine runs, then `completed`,
`failed` (with the error) or `canceled`. Progress counters are flushed to the
row about twice a second, not on every item.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from lazyreg.db.models import Task, utcnow
from lazyreg.redact import redact
from lazyreg.services import Services
from lazyreg.worker import WorkerId

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.5
ACTIVE_STATES = ("waiting", "running")


@dataclass
class Progress:
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    message: str = ""

    def _counter(self, name: str) -> dict[str, int]:
        return self.counters.setdefault(name, {"done": 0, "total": 0})

    def add_total(self, name: str, n: int = 1) -> None:
        self._counter(name)["total"] += n

    def advance(self, name: str, n: int = 1) -> None:
        self._counter(name)["done"] += n

    def snapshot(self) -> dict[str, Any]:
        snap: dict[str, Any] = {k: dict(v) for k, v in self.counters.items()}
        if self.message:
            snap["message"] = self.message
        return snap


@dataclass
class TaskContext:
    task_id: str
    services: Services
    progress: Progress
    # What the task skipped and why; saved with the task whether it completes or fails.
    warnings: list[str] = field(default_factory=list)


TaskFn = Callable[[TaskContext], Awaitable[list[str]]]


class TaskObserver(Protocol):
    def task_finished(self, kind: str, state: str, seconds: float) -> None:
        """A task ended in `state` after running `seconds` (0 if it never ran)."""


class _Unobserved:
    def task_finished(self, kind: str, state: str, seconds: float) -> None:
        pass


def _worker_alive(worker: str | None, services: Services) -> bool:
    owner = WorkerId.parse(worker or "")
    return owner is not None and not owner.known_dead()  # another host's: trust its row


class TaskRunner:
    def __init__(self, services: Services, observer: TaskObserver | None = None) -> None:
        self.services = services
        self.observer = observer or _Unobserved()
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def recover(self) -> int:
        """Fail the tasks that a dead process left waiting or running."""
        def fail_orphans(session: Session) -> int:
            n = 0
            for task in session.scalars(select(Task).where(Task.state.in_(ACTIVE_STATES))):
                if not _worker_alive(task.worker, self.services):
                    task.state = "failed"
                    task.error = "interrupted: the server running it stopped; run it again"
                    task.finished = utcnow()
                    n += 1
            return n
        return await self.services.db.write(fail_orphans)

    async def submit(self, kind: str, params: dict[str, Any], fn: TaskFn,
                     lock_key: str | None = None) -> Task:
        task = Task(id=str(uuid.uuid4()), kind=kind, state="waiting", params=params,
                    lock_key=lock_key, worker=self.services.worker_id, progress={},
                    created_resources=[], warnings=[], created=utcnow())

        def insert(session: Session) -> Task:
            session.add(task)
            return task
        await self.services.db.write(insert)
        self._tasks[task.id] = asyncio.create_task(self._run(task.id, kind, fn, lock_key))
        return task

    async def _wait_for_other_processes(self, task_id: str, lock_key: str) -> None:
        def claim(session: Session) -> bool:
            others = session.scalars(select(Task).where(
                Task.lock_key == lock_key, Task.state == "running", Task.id != task_id)).all()
            if any(_worker_alive(t.worker, self.services) for t in others):
                return False
            session.get_one(Task, task_id).state = "running"
            session.get_one(Task, task_id).started = utcnow()
            return True
        while not await self.services.db.write(claim):
            await asyncio.sleep(1.0)

    async def _run(self, task_id: str, kind: str, fn: TaskFn, lock_key: str | None) -> None:
        progress = Progress()
        ctx = TaskContext(task_id, self.services, progress)
        lock = self._locks.setdefault(lock_key, asyncio.Lock()) if lock_key else None
        flusher: asyncio.Task[None] | None = None
        started: float | None = None
        outcome, error = "failed", ""
        try:
            if lock:
                await lock.acquire()
            if lock_key:
                await self._wait_for_other_processes(task_id, lock_key)
            else:
                await self._update(task_id, state="running", started=utcnow())
            flusher = asyncio.create_task(self._flush_loop(task_id, progress))
            started = time.monotonic()
            created = await fn(ctx)
            progress.message = progress.message or f"done in {time.monotonic() - started:.2f}s"
            await self._update(task_id, state="completed", finished=utcnow(),
                               progress=progress.snapshot(), created_resources=created,
                               warnings=[redact(w) for w in ctx.warnings])
            outcome = "completed"
        except asyncio.CancelledError:
            outcome, error = "canceled", "canceled"
            await self._update(task_id, state="canceled", finished=utcnow(),
                               progress=progress.snapshot(), error="canceled",
                               warnings=[redact(w) for w in ctx.warnings])
            raise
        except Exception as exc:
            error = _describe(exc)
            log.debug("task %s failed", task_id, exc_info=True)
            await self._update(task_id, state="failed", finished=utcnow(),
                               progress=progress.snapshot(), error=error,
                               warnings=[redact(w) for w in ctx.warnings])
        finally:
            seconds = time.monotonic() - started if started is not None else 0.0
            self.observer.task_finished(kind, outcome, seconds)
            # The task's log line; it carries the id of the request that started it.
            warned = f", {len(ctx.warnings)} warnings" if ctx.warnings else ""
            log.log(logging.WARNING if outcome == "failed" else logging.INFO,
                    "task %s %s %s in %.2fs%s%s", task_id, kind, outcome, seconds, warned,
                    f": {error}" if error else "")
            if flusher:
                flusher.cancel()
            if lock:
                lock.release()
            self._tasks.pop(task_id, None)

    async def _flush_loop(self, task_id: str, progress: Progress) -> None:
        last: dict[str, Any] = {}
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            snap = progress.snapshot()
            if snap != last:
                await self._update(task_id, progress=snap)
                last = snap

    async def _update(self, task_id: str, **values: Any) -> None:
        def apply(session: Session) -> None:
            task = session.get_one(Task, task_id)
            for key, value in values.items():
                setattr(task, key, value)
        await self.services.db.write(apply)

    async def wait(self, task_id: str) -> None:
        task = self._tasks.get(task_id)
        if task:
            await asyncio.shield(task)

    async def shutdown(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return redact(f"{type(exc).__name__}: {text}")  # tasks are readable by every viewer
