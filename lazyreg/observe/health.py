"""`GET /healthz` (the process answers) and `GET /readyz` (database and storage reachable).

`/healthz` touches nothing: a load balancer or a liveness probe learns that
the event loop runs. `/readyz` asks the database for `SELECT 1` and the blob
store whether it can serve (`BlobStore.ready`: the storage directory is there
and writable, or the object store's bucket answers), each within
READY_TIMEOUT seconds; any failure is a 503 naming the part that failed
(never the error's text, which may hold a host or a user name; that goes to
the log). Probes that arrive while one is running share its answer, so a
burst of them, or a database that hangs, costs one probe at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field

from aiohttp import web
from sqlalchemy import text

from lazyreg.db.engine import Database
from lazyreg.state import STATE
from lazyreg.storage.base import BlobStore

log = logging.getLogger(__name__)

READY_TIMEOUT = 2.0


@dataclass
class Readiness:
    """Runs the readiness checks, one probe at a time, and logs when the answer changes."""

    _probe: asyncio.Task[dict[str, str]] | None = field(default=None, repr=False)
    _last_ready: bool | None = field(default=None, repr=False)

    async def check(self, db: Database, store: BlobStore) -> dict[str, str]:
        """{"database": "ok" | why not, "storage": "ok" | why not}."""
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._run(db, store))
        return await asyncio.shield(self._probe)

    async def _part(self, name: str, work: Awaitable[object]) -> str:
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await work
            return "ok"
        except TimeoutError:
            log.warning("readiness: %s did not answer in %gs", name, READY_TIMEOUT)
            return f"no answer in {READY_TIMEOUT:g}s"
        except Exception as exc:
            log.warning("readiness: %s unreachable: %s", name, exc)
            return f"unreachable ({type(exc).__name__})"

    async def _run(self, db: Database, store: BlobStore) -> dict[str, str]:
        database, storage = await asyncio.gather(
            self._part("database", db.read(lambda s: s.execute(text("SELECT 1")).scalar())),
            self._part("storage", store.ready()))
        checks = {"database": database, "storage": storage}
        ready = all(v == "ok" for v in checks.values())
        if ready != self._last_ready:
            if ready:
                log.info("ready: database and storage reachable")
            elif self._last_ready is not None:
                log.warning("not ready: %s", checks)
            self._last_ready = ready
        return checks


READINESS = web.AppKey("lazyreg_readiness", Readiness)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"}, headers={"Cache-Control": "no-store"})


async def readyz(request: web.Request) -> web.Response:
    app = request.app.get(STATE)
    if app is None:  # the lifespan has not opened the database yet
        return web.json_response({"status": "starting", "checks": {}}, status=503)
    services = app.services
    checks = await request.app[READINESS].check(services.db, services.store)
    ready = all(v == "ok" for v in checks.values())
    return web.json_response({"status": "ready" if ready else "not ready", "checks": checks},
                             status=200 if ready else 503, headers={"Cache-Control": "no-store"})
