"""Scheduled syncs: every process looks for due schedules and starts the runs it claims.

Every POLL seconds, one write transaction claims the due ticks
(`lazyreg.db.schedules.claim_due`): a tick is claimed by one process only,
and a run still going makes its schedule skip the tick, with a log line. A
claimed run is submitted as an ordinary `sync` task (its params say
`"scheduled": true`, so the task list shows it), which also holds the
repository's sync lock like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from lazyreg.db.engine import Database
from lazyreg.db.schedules import Due, claim_due
from lazyreg.sync import task as sync_task

log = logging.getLogger(__name__)

POLL = 0.5  # seconds between looks for due schedules

Submit = Callable[[str, dict[str, Any], str], Awaitable[object]]


class Scheduler:
    def __init__(self, db: Database, submit: Submit, poll: float = POLL) -> None:
        self.db = db
        self.submit = submit
        self.poll = poll
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        failing = False
        while True:
            try:
                await self.tick()
            except Exception as exc:  # the database may be down a while: the next look
                if not failing:  # one line per outage, not one per look
                    log.warning("looking for scheduled syncs failed (retrying every"
                                " %.1f s): %s: %s", self.poll, type(exc).__name__, exc)
                failing = True
            else:
                if failing:
                    log.info("looking for scheduled syncs works again")
                failing = False
            await asyncio.sleep(self.poll)

    async def tick(self) -> list[Due]:
        now = time.time()
        due, skipped = await self.db.write(lambda s: claim_due(s, now))
        for late in skipped:
            log.info("scheduled sync of %s skipped: its last run (task %s) is still going",
                     late.repository, late.task_id)
        for run in due:
            params = sync_task.params(run.repository, run.remote, run.mirror, strict=False)
            params["scheduled"] = True
            log.info("scheduled sync of %s from %s: task %s", run.repository, run.remote,
                     run.task_id)
            await self.submit(sync_task.KIND, params, run.task_id)
        return due
