"""Every request: an id, a log line and its counters; and `GET /metrics`.

`request_ids` (the outermost middleware) gives each request its id and
starts its clock. When the response's headers go out (`on_response_prepare`,
so that a file response's final status, such as 206 or 304, is the one
counted) the hook sends `X-Request-Id`, counts the request under its route
template, counts a blob GET as a hit, a join or a miss with its length (as the blob
handler marked it, `keys.served_from`), and writes the request's log line on
`lazyreg.access`: INFO, except probes and scrapes (QUIET_PATHS) at DEBUG so
that they do not drown the rest.

`GET /metrics` refreshes what is read at scrape time (downloads in flight,
the readiness checks (shared with /readyz's probe), the storage
filesystem's size and free bytes, and stored bytes from the database at
most every STORAGE_TTL seconds; a scrape never waits on the database longer
than SCRAPE_DB_TIMEOUT) and answers the Prometheus text format.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from lazyreg.accounting import ACCOUNT, Account
from lazyreg.config import Settings
from lazyreg.observe import health, login, shared, status_page
from lazyreg.observe.keys import METRICS, blob_source
from lazyreg.observe.logs import REQUEST_ID, request_id_for
from lazyreg.observe.metrics import CONTENT_TYPE, Metrics
from lazyreg.observe.queries import stored_by_kind
from lazyreg.state import STATE

access = logging.getLogger("lazyreg.access")
log = logging.getLogger(__name__)

QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
SCRAPE_DB_TIMEOUT = 2.0
UNMATCHED = "unmatched"  # the route label of a request no route matched (404, 405)


@dataclass(frozen=True, slots=True)
class Started:
    id: str
    at: float  # perf_counter()


@dataclass
class StorageRefresh:
    """The one database read of stored bytes in flight, shared by concurrent scrapes."""

    task: asyncio.Task[dict[str, tuple[int, int]]] | None = None


STARTED = web.RequestKey("lazyreg_started", Started)
STORAGE_REFRESH = web.AppKey("lazyreg_storage_refresh", StorageRefresh)
# Whether the access line carries its fields (method, path, route...) apart: JSON lines only.
ACCESS_FIELDS = web.AppKey("lazyreg_access_fields", bool)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def request_ids(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request_id_for(request.headers.get("X-Request-Id"))
    request[STARTED] = Started(rid, time.perf_counter())
    # Set and never reset: aiohttp handles each request in a task of its own (with a copy
    # of the context), and what it logs after the handler, such as the traceback of an
    # unhandled exception ("Error handling request"), must carry the id too.
    REQUEST_ID.set(rid)
    # What this request makes upstream, and what work it starts does (`lazyreg.accounting`).
    account = Account()
    ACCOUNT.set(account)
    try:
        return await handler(request)
    finally:
        if account.requests:
            # Once the handler is done (a streamed body included): the totals it caused.
            access.info(f"{request.method} {request.rel_url.raw_path} caused upstream"
                        f" {account.requests} requests {account.bytes}B",
                        extra={"request_id": rid, "fields": {
                            "upstream_requests": account.requests,
                            "upstream_bytes": account.bytes,
                            "distribution": account.distribution}})


def route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


async def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    started = request.get(STARTED)
    if started is None:
        return
    response.headers["X-Request-Id"] = started.id
    seconds = time.perf_counter() - started.at
    status = response.status
    route = route_of(request)
    metrics = request.app[METRICS]
    metrics.request(request.method, route, status, seconds)
    length = response.content_length
    source = blob_source(request)
    if source is not None and request.method == "GET" and status in (200, 206):
        metrics.blob_served(source, length or 0)
    level = logging.DEBUG if request.path in QUIET_PATHS else logging.INFO
    if access.isEnabledFor(level):
        path = request.rel_url.raw_path  # still percent-encoded: no spaces, no line breaks
        remote = request.remote
        # Formatted here, with no arguments for the logging module to format (again, in
        # the redacting filter and the formatter), and the JSON fields only for JSON lines.
        sent = "-" if length is None else f"{length}B"
        message = f"{request.method} {path} {status} {sent} {seconds * 1000:.1f}ms from {remote}"
        extra: dict[str, object] = {"request_id": started.id}
        if request.app[ACCESS_FIELDS]:
            extra["fields"] = {
                "method": request.method, "path": path, "route": route, "status": status,
                "bytes": length, "duration_ms": round(seconds * 1000, 3), "remote": remote,
                "blob_source": source, "user_agent": request.headers.get("User-Agent", "")[:200]}
        access.log(level, message, extra=extra)


async def _refresh_storage(request: web.Request) -> None:
    """Stored bytes from the database, one refresh at a time, reused for STORAGE_TTL."""
    metrics = request.app[METRICS]
    app = request.app.get(STATE)
    if app is None or not metrics.storage_stale():
        return
    slot = request.app[STORAGE_REFRESH]
    task = slot.task
    if task is None or task.done():
        task = slot.task = asyncio.create_task(app.services.db.read(stored_by_kind))
    try:
        async with asyncio.timeout(SCRAPE_DB_TIMEOUT):
            found = await asyncio.shield(task)
    except Exception as exc:  # the scrape answers with the last figures
        log.warning("metrics: could not read stored bytes from the database: %s", exc)
        return
    metrics.set_storage(found)


async def _refresh_volume(request: web.Request) -> None:
    """Size and free bytes of the storage directory's filesystem (a statvfs, bounded)."""
    app = request.app.get(STATE)
    if app is None:
        return
    try:
        async with asyncio.timeout(SCRAPE_DB_TIMEOUT):
            usage = await asyncio.to_thread(shutil.disk_usage,
                                            app.services.settings.storage_dir)
    except (OSError, TimeoutError):
        return  # not created yet, or a hung mount: the last figures stay
    request.app[METRICS].set_volume(usage.total, usage.free)


async def metrics_page(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    app = request.app.get(STATE)
    if app is not None:
        metrics.set_downloads_in_flight(len(app.fetcher.progress()))
        # Bounded by health.READY_TIMEOUT per part; a probe in flight is shared.
        metrics.set_ready(await request.app[health.READINESS].check(
            app.services.db, app.services.store))
    await _refresh_storage(request)
    await _refresh_volume(request)
    return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE,
                                                        "Cache-Control": "no-store"})


def setup(app: web.Application, settings: Settings) -> Metrics:
    """Give `app` its metrics, the response hook, and the observe routes.

    The caller puts `request_ids` first in the app's middlewares.
    """
    metrics = Metrics(count_requests=settings.request_metrics)
    app[METRICS] = metrics
    app[STORAGE_REFRESH] = StorageRefresh()
    app[ACCESS_FIELDS] = settings.log_format == "json"
    app[health.READINESS] = health.Readiness()
    app.on_response_prepare.append(on_response_prepare)
    shared.setup(app, settings.usage_flush_interval)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/", status_page.status_page)
    login.setup(app)

    async def drain(_: web.Application) -> None:  # before the lifespan closes the database
        task = app[STORAGE_REFRESH].task
        if task is not None:
            with contextlib.suppress(BaseException):
                await task
    app.on_shutdown.append(drain)
    return metrics
