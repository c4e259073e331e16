"""This process's blob traffic, added to the deployment's figures in the database.

Every `usage_flush_interval` seconds (and before the status page reads them,
and at shutdown) what this process counted since the last flush is added to
the per-minute rows of `lazyreg.db.traffic`: one short write every few
seconds, never one per request. A flush that fails gives its counts back for
the next one (bounded: `Metrics.pending` keeps at most PENDING_MINUTES minutes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

from lazyreg.db import traffic
from lazyreg.observe.keys import METRICS
from lazyreg.state import STATE

log = logging.getLogger(__name__)

FLUSHER = web.AppKey("lazyreg_traffic_flusher", asyncio.Task[None])
# One flush at a time: a reader that flushes before it reads (the status page) waits for
# one in progress, whose counts would otherwise be in neither memory nor the database.
FLUSHING = web.AppKey("lazyreg_traffic_flushing", asyncio.Lock)


async def flush(app: web.Application) -> None:
    """Add what this process counted to the database's figures."""
    metrics = app[METRICS]
    state = app.get(STATE)
    if state is None:
        return
    async with app[FLUSHING]:
        if not metrics.pending:
            return
        taken = metrics.take_pending()
        try:
            await state.services.db.write(lambda s: traffic.add(s, taken))
        except Exception as exc:
            metrics.give_back(taken)
            log.warning("could not add this process's blob traffic to the database: %s", exc)


async def _every(app: web.Application, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        await flush(app)


def setup(app: web.Application, interval: float) -> None:
    async def start(app: web.Application) -> None:  # after the lifespan opened the database
        app[FLUSHER] = asyncio.create_task(_every(app, interval))

    async def stop(app: web.Application) -> None:  # before the lifespan closes it
        task = app.get(FLUSHER)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await flush(app)

    app[FLUSHING] = asyncio.Lock()
    app.on_startup.append(start)
    app.on_shutdown.append(stop)
