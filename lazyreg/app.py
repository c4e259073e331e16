"""The aiohttp application: one port for /v2 (registry) and /api/v1 (management).

The lifespan owns the database, the storage, the upstream HTTP session, the
fetcher and the task runner; errors are rendered here and nowhere else.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web
from pydantic import ValidationError

from lazyreg import api, registry
from lazyreg.api.access import api_access
from lazyreg.api.limits import MAX_BODY_BYTES
from lazyreg.auth.service import Authenticator
from lazyreg.auth.startup import bootstrap_users, open_secrets, report_undecryptable
from lazyreg.cache import LookupCache
from lazyreg.check import adopt_orphan_files
from lazyreg.config import Settings
from lazyreg.db.engine import Database
from lazyreg.errors import ApiError, RegistryError, SecretUnavailable, StorageFull
from lazyreg.fetch import Fetcher, LazyStore
from lazyreg.fetch.prefetch import Prefetcher
from lazyreg.observe import requests as observe
from lazyreg.observe.keys import METRICS
from lazyreg.pullthrough import PullThrough
from lazyreg.redact import redact
from lazyreg.registry.access import registry_access
from lazyreg.services import Services
from lazyreg.space import SpaceKeeper
from lazyreg.space import tasks as space_tasks
from lazyreg.state import STATE, AppState
from lazyreg.storage.filesystem import FilesystemStore
from lazyreg.sync import task as sync_task
from lazyreg.sync.pending import PendingManifests
from lazyreg.sync.schedule import Scheduler
from lazyreg.tasks.runner import TaskRunner
from lazyreg.transfer import tasks as transfer_tasks
from lazyreg.upstream.pool import UpstreamPool
from lazyreg.worker import WorkerId

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def render_registry_error(exc: RegistryError, allow: str | None = None) -> web.Response:
    detail = exc.detail if not isinstance(exc.detail, str) else redact(exc.detail)
    body = {"errors": [{"code": exc.code, "message": redact(exc.message), "detail": detail}]}
    headers = {"Docker-Distribution-API-Version": "registry/2.0", **exc.headers}
    if allow is not None:
        headers["Allow"] = allow  # a 405 names the methods the resource does answer
    return web.json_response(body, status=exc.status, headers=headers)


def render_api_error(status: int, message: str, field: str | None,
                     headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"detail": redact(message), "field": field}, status=status,
                             headers=headers)


def render_validation_error(exc: ValidationError) -> web.Response:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or None
    message = f"{field}: {first['msg']}" if field else first["msg"]
    errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
              for e in exc.errors()]
    return web.json_response({"detail": message, "field": field, "errors": errors}, status=400)


# PostgreSQL's SQLSTATE for "disk full".
PG_DISK_FULL = "53100"


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) says the disk or the database is full."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if getattr(current, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            return True
        if getattr(current, "sqlstate", None) == PG_DISK_FULL:
            return True
        # SQLAlchemy keeps the driver's exception in `orig`.
        todo += [current.__cause__, current.__context__, getattr(current, "orig", None)]
    return False


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    # One level, not a middleware and a helper: every request pays for each level.
    try:
        return await handler(request)
    except RegistryError as exc:
        return render_registry_error(exc)
    except ApiError as exc:
        return render_api_error(exc.status, exc.message, exc.field, exc.headers)
    except SecretUnavailable as exc:
        if request.path.startswith("/v2"):
            return render_registry_error(RegistryError("UNAVAILABLE", exc.message))
        return render_api_error(503, exc.message, None)
    except ValidationError as exc:
        return render_validation_error(exc)
    except web.HTTPException as exc:
        allow = exc.headers.get("Allow")
        if request.path.startswith("/v2"):
            code = "UNSUPPORTED" if exc.status == 405 else "NAME_UNKNOWN"
            return render_registry_error(RegistryError(code, exc.reason, status=exc.status),
                                         allow)
        if exc.status >= 400:
            return render_api_error(exc.status, exc.reason, None,
                                    {"Allow": allow} if allow else None)
        raise
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        log.error("%s %s: the disk is full: %s", request.method, request.path, exc)
        full = StorageFull("insufficient storage: the server's disk (or database) is full;"
                           " nothing was changed; free some space and retry")
        if request.path.startswith("/v2"):
            return render_registry_error(RegistryError("UNAVAILABLE", full.message,
                                                       status=full.status))
        return render_api_error(full.status, full.message, None)


def refused_body(request: web.Request) -> web.Response:
    """Only the management API reads request bodies; everything else is read-only.

    Refused before a handler runs, and the connection closed rather than the
    unread body drained.
    """
    message = "this endpoint is read-only: a request body is refused"
    if request.path.startswith("/v2"):
        response = render_registry_error(RegistryError("UNSUPPORTED", message, status=413))
    else:
        response = render_api_error(413, message, None)
    response.force_close()
    return response


async def forget_targets(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A management change may move what a base path serves: drop the cached targets.

    After the handler, whether it succeeded or not (a write may commit and then
    fail): a lookup that read the database before the change cannot put its
    answer back (see `LookupCache.generation`). Answers cached under a target
    need no dropping: a repository's new version or a new repository is a new
    target.
    """
    try:
        return await handler(request)
    finally:
        if request.method not in ("GET", "HEAD"):
            request.app[STATE].lookups.invalidate_targets()


@web.middleware
async def by_area(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The rules of the request's area, and only those: one middleware rather than one
    per rule, so that a registry request does not pass through the API's (and the
    reverse); a middleware level costs every request, and /v2 answers are small.

    /api/: who may call it and the audit line (`api_access`), then `forget_targets`.
    Anything else: no request body (`refused_body`); /v2 with auth on: who may pull
    what (`registry_access`).
    """
    path = request.path
    if path.startswith("/api/"):
        return await api_access(request, lambda r: forget_targets(r, handler))
    if request.body_exists:
        return refused_body(request)
    if path.startswith("/v2") and request.app[STATE].auth.enabled:
        return await registry_access(request, handler)
    return await handler(request)


def make_lifespan(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        secrets = open_secrets(settings)
        db = Database(settings.resolved_database_url)
        db.migrate(secrets)
        bootstrap_users(settings, db)
        report_undecryptable(db, secrets)
        worker = WorkerId.current()
        store = FilesystemStore(settings.storage_dir, worker)
        cleaned = await store.clean_staging()
        adopted = await adopt_orphan_files(db, store)
        if cleaned or adopted:
            log.info("start-up repair: removed %d staging files of dead processes,"
                     " adopted %d stored files that had no artifact row", cleaned, adopted)
        timeout = aiohttp.ClientTimeout(total=None, connect=30, sock_read=120)
        # A large read buffer: the default 64 KiB pauses the socket many times per blob.
        session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False,
                                        read_bufsize=4 * 1024 * 1024,
                                        connector=aiohttp.TCPConnector(limit=0))
        metrics = app[METRICS]
        services = Services(settings, db, store, UpstreamPool(session, observer=metrics),
                            secrets, worker)
        tasks = TaskRunner(db, worker, observer=metrics)
        await tasks.recover()
        fetcher = Fetcher(services)
        lookups = LookupCache(max_bytes=settings.lookup_cache_bytes)
        pullthrough = PullThrough(services, fetcher, on_stale=metrics.stale_served)
        space = SpaceKeeper(services)
        fetcher.on_stored.append(space.stored)
        space.on_evict.append(lambda _digest, size: metrics.evicted(size))
        # After a sync, the base paths following the repository serve its new version.
        sync_task.register(tasks, services, fetcher, synced=lookups.invalidate_targets)
        space_tasks.register(tasks, services, space)
        lazy = LazyStore(services, fetcher)
        pending = PendingManifests(services)  # the platform filter's manifests, on demand
        transfer_tasks.register(tasks, services, lazy, imported=lookups.invalidate_targets,
                                pending=pending)
        app[STATE] = AppState(services, fetcher, tasks, lookups,
                              Authenticator(settings, db, secrets), lazy, pullthrough, space,
                              pending, Prefetcher(services, fetcher))
        space.start()
        # Scheduled syncs (`sync_interval`): each tick claimed by one process.
        scheduler = Scheduler(db, tasks.submit)
        scheduler.start()
        try:
            yield
        finally:
            await scheduler.close()
            await tasks.shutdown()
            await pullthrough.close()
            await app[STATE].pending.close()
            await app[STATE].prefetch.close()
            await fetcher.close()
            await space.close()
            await session.close()
            db.dispose()
    return lifespan


def create_app(settings: Settings) -> web.Application:
    # request_ids first: its id and clock cover everything, errors rendered included.
    app = web.Application(middlewares=[observe.request_ids, error_middleware, by_area],
                          client_max_size=MAX_BODY_BYTES)
    observe.setup(app, settings)  # metrics, /metrics, /healthz, /readyz, the status page at /
    app.cleanup_ctx.append(make_lifespan(settings))
    registry.setup_routes(app)
    api.setup_routes(app)
    return app
