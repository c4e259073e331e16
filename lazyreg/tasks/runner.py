"""Run long operations in the background and record them as task rows.

Kinds of task are registered by name (`register`), each with its body and,
optionally, how to derive its lock key from its params; the API submits a
kind and params (`submit`), which are stored in the task's row as given.

A task is `waiting` until it holds its lock key (one sync per repository at a
time, across processes: a live process's `running` task with the same key
makes it wait), `running` while its body runs, then `completed`, `failed`
(with the error) or `canceled` (the server shut down under it). Progress
counters are flushed to the row about twice a second, not on every item. A
process starting up fails the `waiting` and `running` tasks of processes of
this host that are dead (`recover`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from lazyreg.accounting import ACCOUNT, Account
from lazyreg.db.engine import Database
from lazyreg.db.models import Task, utcnow
from lazyreg.redact import redact
from lazyreg.taskcontext import LockKey, Params, Progress, TaskBody, TaskContext
from lazyreg.types import ACTIVE_STATES
from lazyreg.worker import WorkerId

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.5  # seconds between progress writes of a running task
LOCK_POLL = 1.0  # seconds between checks of a lock key held by another process


class UnknownTaskKind(ValueError):
    """A kind no layer registered: a programming error, not a user's."""


class TaskObserver(Protocol):
    def task_finished(self, kind: str, state: str, seconds: float) -> None:
        """A task ended in `state` after running `seconds` (0 if it never ran)."""


class _Unobserved:
    def task_finished(self, kind: str, state: str, seconds: float) -> None:
        pass


@dataclass(frozen=True)
class _Kind:
    body: TaskBody
    lock: LockKey | None


def _worker_alive(worker: str | None) -> bool:
    owner = WorkerId.parse(worker or "")
    return owner is not None and not owner.known_dead()  # another host's: trust its row


class TaskRunner:
    def __init__(self, db: Database, worker: WorkerId, *, lock_poll: float = LOCK_POLL,
                 flush_interval: float = FLUSH_INTERVAL,
                 observer: TaskObserver | None = None) -> None:
        self.db = db
        self.worker = worker
        self.observer = observer or _Unobserved()
        self.lock_poll = lock_poll
        self.flush_interval = flush_interval
        self._kinds: dict[str, _Kind] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._submitting = asyncio.Lock()

    def register(self, kind: str, body: TaskBody, *, lock: LockKey | None = None) -> None:
        if kind in self._kinds:
            raise ValueError(f"task kind {kind!r} is registered already")
        self._kinds[kind] = _Kind(body, lock)

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._kinds)

    async def recover(self) -> int:
        """Fail the tasks that a dead process left waiting or running."""
        def fail_orphans(session: Session) -> int:
            n = 0
            for task in session.scalars(select(Task).where(Task.state.in_(sorted(ACTIVE_STATES)))):
                if not _worker_alive(task.worker):
                    task.state = "failed"
                    task.error = "interrupted: the server running it stopped; run it again"
                    task.finished = utcnow()
                    n += 1
            return n
        return await self.db.write(fail_orphans)

    async def submit(self, kind: str, params: dict[str, Any], task_id: str | None = None
                     ) -> Task:
        """Record a `waiting` task of `kind` and start it; its row. `task_id`: an id
        chosen beforehand (a scheduled sync claims its run under it)."""
        found = self._kinds.get(kind)
        if found is None:
            raise UnknownTaskKind(f"no task kind {kind!r} is registered")
        lock_key = found.lock(params) if found.lock else None
        task = Task(id=task_id or str(uuid.uuid4()), kind=kind, state="waiting", params=params,
                    lock_key=lock_key, worker=str(self.worker), progress={},
                    created_resources=[], warnings=[], created=utcnow())

        def insert(session: Session) -> Task:
            session.add(task)
            return task
        await self.db.write(insert)
        self._tasks[task.id] = asyncio.create_task(
            self._run(task.id, kind, found.body, params, lock_key))
        return task

    async def submit_once(self, kind: str, params: dict[str, Any]) -> tuple[Task, bool]:
        """Like `submit`, unless a task with the same lock key is waiting or running in a
        live process: then that task, and False. For work that a second run would only
        repeat (verifying storage). The look and the insert are one transaction, and one
        at a time in this process; with SQLite, across processes too (writes are
        serialized); two PostgreSQL nodes asked at the same instant may each start one,
        and the lock key then runs them one after the other."""
        found = self._kinds.get(kind)
        if found is None or found.lock is None:
            raise UnknownTaskKind(f"no task kind {kind!r} with a lock key is registered")
        lock_key = found.lock(params)
        task = Task(id=str(uuid.uuid4()), kind=kind, state="waiting", params=params,
                    lock_key=lock_key, worker=str(self.worker), progress={},
                    created_resources=[], warnings=[], created=utcnow())

        def insert_unless_active(session: Session) -> Task | None:
            for active in session.scalars(select(Task).where(
                    Task.lock_key == lock_key, Task.state.in_(sorted(ACTIVE_STATES)))):
                if _worker_alive(active.worker):
                    session.expunge(active)
                    return active
            session.add(task)
            return None
        async with self._submitting:
            active = await self.db.write(insert_unless_active)
            if active is not None:
                return active, False
            self._tasks[task.id] = asyncio.create_task(
                self._run(task.id, kind, found.body, params, lock_key))
        return task, True

    async def _wait_for_other_processes(self, task_id: str, lock_key: str) -> None:
        def claim(session: Session) -> bool:
            others = session.scalars(select(Task).where(
                Task.lock_key == lock_key, Task.state == "running", Task.id != task_id)).all()
            if any(_worker_alive(t.worker) for t in others):
                return False
            task = session.get_one(Task, task_id)
            task.state, task.started = "running", utcnow()
            return True
        while not await self.db.write(claim):
            await asyncio.sleep(self.lock_poll)

    async def _run(self, task_id: str, kind: str, body: TaskBody, params: Params,
                   lock_key: str | None) -> None:
        ctx = TaskContext(task_id)
        progress = ctx.progress
        # Its own account: not the request's that submitted it (`lazyreg.accounting`).
        account = Account()
        ACCOUNT.set(account)  # this asyncio task's own context
        lock = self._locks.setdefault(lock_key, asyncio.Lock()) if lock_key else None
        flusher: asyncio.Task[None] | None = None
        stop_flushing = asyncio.Event()
        locked = False
        started: float | None = None
        outcome, error = "failed", ""
        try:
            if lock:
                await lock.acquire()
                locked = True
            if lock_key:
                await self._wait_for_other_processes(task_id, lock_key)
            else:
                await self._update(task_id, state="running", started=utcnow())
            flusher = asyncio.create_task(self._flush_loop(task_id, progress, stop_flushing))
            started = time.monotonic()
            created = await body(ctx, params)
            progress.message = progress.message or f"done in {time.monotonic() - started:.2f}s"
            if account.requests:  # what it made upstream, its lazy downloads included
                progress.counters["upstream"] = {"requests": account.requests,
                                                 "bytes": account.bytes}
            await self._stop(flusher, stop_flushing)
            await self._update(task_id, state="completed", finished=utcnow(),
                               progress=progress.snapshot(), created_resources=created,
                               warnings=[redact(w) for w in ctx.warnings])
            outcome = "completed"
        except asyncio.CancelledError:
            outcome, error = "canceled", "canceled"
            await self._stop(flusher, stop_flushing)
            await self._update(task_id, state="canceled", finished=utcnow(),
                               progress=progress.snapshot(), error="canceled",
                               warnings=[redact(w) for w in ctx.warnings])
            raise
        except Exception as exc:
            error = _describe(exc)
            log.debug("task %s failed", task_id, exc_info=True)
            await self._stop(flusher, stop_flushing)
            await self._update(task_id, state="failed", finished=utcnow(),
                               progress=progress.snapshot(), error=error,
                               warnings=[redact(w) for w in ctx.warnings])
        finally:
            seconds = time.monotonic() - started if started is not None else 0.0
            self.observer.task_finished(kind, outcome, seconds)
            # The task's log line; it carries the id of the request that started it.
            warned = f", {len(ctx.warnings)} warnings" if ctx.warnings else ""
            log.log(logging.WARNING if outcome == "failed" else logging.INFO,
                    "task %s %s %s in %.2fs%s, upstream %d requests %dB%s", task_id, kind,
                    outcome, seconds, warned, account.requests, account.bytes,
                    f": {error}" if error else "")
            if flusher:
                flusher.cancel()  # only if the final update itself failed
            if lock and locked:
                lock.release()
            self._tasks.pop(task_id, None)

    async def _flush_loop(self, task_id: str, progress: Progress, stop: asyncio.Event) -> None:
        last: dict[str, Any] = {}
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_interval):
                    await stop.wait()
            if stop.is_set():
                return
            snap = progress.snapshot()
            if snap != last:
                await self._update(task_id, progress=snap)
                last = snap

    @staticmethod
    async def _stop(flusher: asyncio.Task[None] | None, stop: asyncio.Event) -> None:
        """Let the flusher finish the write it is in, so that it cannot land after the
        final one (a write in a thread goes on when the task awaiting it is canceled)."""
        stop.set()
        if flusher is not None:
            await asyncio.gather(flusher, return_exceptions=True)

    async def _update(self, task_id: str, **values: Any) -> None:
        def apply(session: Session) -> None:
            task = session.get_one(Task, task_id)
            for key, value in values.items():
                setattr(task, key, value)
        await self.db.write(apply)

    async def wait(self, task_id: str) -> None:
        """Until the task, if it runs in this process, has ended."""
        task = self._tasks.get(task_id)
        if task:
            await asyncio.shield(task)

    async def shutdown(self) -> None:
        """Cancel every task of this process; their rows say `canceled`."""
        running = dict(self._tasks)
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)

        def cancel_unstarted(session: Session) -> None:
            # A task canceled before its first step never ran its own handler.
            for task in session.scalars(select(Task).where(
                    Task.id.in_(sorted(running)), Task.state.in_(sorted(ACTIVE_STATES)))):
                task.state, task.error, task.finished = "canceled", "canceled", utcnow()
        if running:
            await self.db.write(cancel_unstarted)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return redact(f"{type(exc).__name__}: {text}")  # tasks are readable by every viewer
