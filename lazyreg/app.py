"""The aiohttp application: one port for /v2 (registry) and /api/v1 (management).

The lifespan owns the database, the storage, the upstream HTTP session, the
fetcher and the task runner; errors are rendered here and nowhere else.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from html import escape

import aiohttp
from aiohttp import web
from pydantic import ValidationError

from lazyreg import api, registry
from lazyreg.api.access import api_access
from lazyreg.api.http import PUBLISHED
from lazyreg.api.limits import MAX_BODY_BYTES
from lazyreg.auth.browsers import allowed_host
from lazyreg.auth.service import Authenticator
from lazyreg.auth.startup import bootstrap_users, open_secrets, report_undecryptable
from lazyreg.auth.throttle import CLIENT
from lazyreg.cache import LookupCache
from lazyreg.check import adopt_orphan_files, register_verify
from lazyreg.cluster import InternalListener, start_internal
from lazyreg.config import Settings
from lazyreg.db.changes import (
    ACCOUNT_PREFIX,
    ACCOUNTS,
    EVERYTHING,
    MANAGEMENT,
    TARGETS,
    ChangeFeed,
)
from lazyreg.db.engine import Database, as_unavailable
from lazyreg.errors import (
    ApiError,
    BackendUnavailable,
    RegistryError,
    SecretUnavailable,
    StorageFull,
    StorageUnavailable,
    TooLarge,
    TooSlow,
)
from lazyreg.fetch import Fetcher, LazyStore
from lazyreg.fetch.peer import PeerClient
from lazyreg.fetch.prefetch import Prefetcher
from lazyreg.observe import requests as observe
from lazyreg.observe.keys import METRICS
from lazyreg.observe.login import FORM_PATHS
from lazyreg.pullthrough import PullThrough
from lazyreg.redact import redact
from lazyreg.registry.access import registry_access
from lazyreg.services import Services
from lazyreg.space import SpaceKeeper
from lazyreg.space import tasks as space_tasks
from lazyreg.space.staging import StagingSweeper, sweep
from lazyreg.state import STATE, AppState
from lazyreg.storage.choose import open_store
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


# Sent with every management API answer: a browser must never read one as anything but JSON.
NOSNIFF = {"X-Content-Type-Options": "nosniff"}


def render_api_error(status: int, message: str, field: str | None,
                     headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"detail": redact(message), "field": field}, status=status,
                             headers={**NOSNIFF, **(headers or {})})


def render_validation_error(exc: ValidationError) -> web.Response:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or None
    message = f"{field}: {first['msg']}" if field else first["msg"]
    errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
              for e in exc.errors()]
    return web.json_response({"detail": message, "field": field, "errors": errors}, status=400,
                             headers=NOSNIFF)


UNAVAILABLE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lazyreg: {part} unreachable</title>
<meta http-equiv="refresh" content="{retry}"></head>
<body><h1>lazyreg: the {part} is unreachable</h1>
<p id="unavailable" data-part="{part}">The server runs, but its {part} cannot be reached
right now. Content this server holds in memory is still served; the rest answers 503
until the {part} is back. This page retries every {retry} s; <a href="/readyz">/readyz</a>
says when the server is ready again.</p></body></html>
"""


def render_unavailable(request: web.Request, exc: BackendUnavailable) -> web.Response:
    """503 + Retry-After in the request's area: an OCI body on /v2, a page for people on the
    status page and its login form, JSON elsewhere (the API, /token)."""
    log.warning("%s %s: 503, the %s is unreachable: %s", request.method, request.path,
                exc.part, exc.message)
    if request.path.startswith("/v2"):
        return render_registry_error(RegistryError("UNAVAILABLE", exc.message, status=503)
                                     .with_headers(exc.headers))
    if request.path != "/" and request.path not in FORM_PATHS:  # the API, /token: JSON
        return render_api_error(503, exc.message, None, exc.headers)
    page = UNAVAILABLE_PAGE.format(part=escape(exc.part), retry=exc.retry_after)
    return web.Response(text=page, status=503, content_type="text/html",
                        headers={**exc.headers, "Cache-Control": "no-store",
                                 "X-Content-Type-Options": "nosniff"})


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
        response = render_api_error(exc.status, exc.message, exc.field, exc.headers)
        if isinstance(exc, TooSlow | TooLarge):
            response.force_close()  # rather than wait for the rest of the body
        return response
    except BackendUnavailable as exc:
        return render_unavailable(request, exc)
    except StorageUnavailable as exc:  # an OSError, so that storage code can treat it as one
        return render_unavailable(request, BackendUnavailable(
            "object store", f"blob storage unavailable; retry later ({exc})", exc.retry_after))
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
            unavailable = as_unavailable(exc)  # a session used without Database.read/write
            if unavailable is None:
                raise
            return render_unavailable(request, unavailable)
        log.error("%s %s: the disk is full: %s", request.method, request.path, exc)
        full = StorageFull("insufficient storage: the server's disk (or database) is full;"
                           " nothing was changed; free some space and retry")
        if request.path.startswith("/v2"):
            return render_registry_error(RegistryError("UNAVAILABLE", full.message,
                                                       status=full.status))
        return render_api_error(full.status, full.message, None)


# Outside /api/, the POSTs that read a body: the status page's login forms, and the
# token server's OAuth2 form (`POST /token`).
BODY_PATHS = FORM_PATHS | {"/token"}


def refused_body(request: web.Request) -> web.Response:
    """Only the management API and `POST /token` read request bodies; everything else
    is read-only.

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
    """A management change may move what a base path serves: drop the cached targets, here
    at once and, through the change feed, on every process.

    The write published the change in its own transaction (`api.http.write`, keys
    `changes.MANAGEMENT`); other processes apply it within SEEN_BOUND. Here it is
    applied after the handler, whether it succeeded or not (a write may commit and
    then fail): a lookup that read the database before the change cannot put its
    answer back (see `LookupCache.generation`). Answers cached under a target need
    no dropping: a repository's new version or a new repository is a new target.
    A DELETE that succeeded answers only once every process has applied it
    (`ChangeFeed.wait_applied`): what it deleted is then served nowhere.
    """
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return await handler(request)
    feed = request.app[STATE].changes
    try:
        response = await handler(request)
    finally:
        feed.apply(*MANAGEMENT, generation=request.get(PUBLISHED))
    generation = request.get(PUBLISHED)
    if generation is not None and request.method == "DELETE" and response.status < 300:
        lagging = await feed.wait_applied(generation)
        if lagging:
            log.warning("%s %s: processes %s did not confirm the deletion within %g s;"
                        " they stopped serving from memory by then", request.method,
                        request.path, ", ".join(lagging), feed.grace)
    return response


def refused_host(request: web.Request) -> web.Response:
    """With auth off, a request for a host name that is not this server's (DNS rebinding)."""
    host = (request.headers.get("Host") or "")[:100]
    message = (f"host {host!r} is not this server's: with auth off only a loopback name or"
               " the external_url setting's host is answered")
    if request.path.startswith("/v2"):
        return render_registry_error(RegistryError("DENIED", message))
    return render_api_error(403, message, "Host")


async def as_client(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Handle a request where passwords may be checked: the login throttle counts its
    client's address (`lazyreg.auth.throttle.CLIENT`)."""
    token = CLIENT.set(request.remote)
    try:
        return await handler(request)
    finally:
        CLIENT.reset(token)


@web.middleware
async def by_area(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The rules of the request's area, and only those: one middleware rather than one
    per rule, so that a registry request does not pass through the API's (and the
    reverse); a middleware level costs every request, and /v2 answers are small.

    With auth off, first: the `Host` must be this server's (`refused_host`).
    /api/: who may call it and the audit line (`api_access`), then `forget_targets`;
    answers say `nosniff`. Anything else: no request body (`refused_body`) but the
    login forms (`lazyreg.observe.login`) and `POST /token`'s bounded form
    (`lazyreg.registry.token`); /v2 with auth on: who may pull what (`registry_access`).
    """
    path = request.path
    app = request.app[STATE]
    if not app.auth.enabled and not allowed_host(request.headers.get("Host"),
                                                 app.services.settings.external_url):
        return refused_host(request)
    if path.startswith("/api/"):
        response = await as_client(
            request, lambda r: api_access(r, lambda r2: forget_targets(r2, handler)))
        response.headers.update(NOSNIFF)
        return response
    if request.body_exists and not (request.method == "POST" and path in BODY_PATHS):
        return refused_body(request)  # the forms read their own, within the deadline
    if path.startswith("/v2"):
        return await (registry_access(request, handler) if app.auth.enabled
                      else handler(request))
    return await as_client(request, handler)  # /token, the status page and its login


def follow_change(key: str, lookups: LookupCache, pullthrough: PullThrough,
                  auth: Authenticator) -> None:
    """What a change published on the feed (here or by another process) drops here:
    route answers and pull-through memories (`targets`), the accounts whose tokens are
    checked in memory (`accounts`, or `account:<id>` for one)."""
    if key in (TARGETS, EVERYTHING):
        lookups.invalidate_targets()
        pullthrough.forget()
    if key in (ACCOUNTS, EVERYTHING):
        auth.invalidate_account(None)
    elif key.startswith(ACCOUNT_PREFIX) and key[len(ACCOUNT_PREFIX):].isdigit():
        auth.invalidate_account(int(key[len(ACCOUNT_PREFIX):]))


def make_lifespan(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        secrets = open_secrets(settings)
        db = Database(settings.resolved_database_url)
        db.migrate(secrets)
        bootstrap_users(settings, db)
        report_undecryptable(db, secrets)
        worker = WorkerId.current()
        store = await open_store(settings, worker)
        timeout = aiohttp.ClientTimeout(total=None, connect=30, sock_read=120)
        # A large read buffer: the default 64 KiB pauses the socket many times per blob.
        session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False,
                                        read_bufsize=4 * 1024 * 1024,
                                        connector=aiohttp.TCPConnector(limit=0))
        metrics = app[METRICS]
        services = Services(settings, db, store, UpstreamPool(session, observer=metrics),
                            secrets, worker)
        cleaned = await sweep(services)
        adopted = await adopt_orphan_files(db, store)
        if cleaned or adopted:
            log.info("start-up repair: removed %d staged blobs of dead processes,"
                     " adopted %d stored files that had no artifact row", cleaned, adopted)
        tasks = TaskRunner(db, worker, observer=metrics)
        await tasks.recover()
        peers: PeerClient | None = None
        peer_session: aiohttp.ClientSession | None = None
        internal: InternalListener | None = None
        if settings.cluster_secret is not None:
            # Its own session: peers' bytes are read in blocks, not pumped like upstream bodies.
            peer_session = aiohttp.ClientSession(auto_decompress=False,
                                                 connector=aiohttp.TCPConnector(limit=0))
            peers = PeerClient(peer_session, settings.cluster_secret.get_secret_value())
        fetcher = Fetcher(services, peers)
        if settings.cluster_secret is not None:
            internal = await start_internal(settings, fetcher, store)
            services.cluster_url = internal.url
            log.info("cluster node: peers read this server's downloads at %s", internal.url)
        lookups = LookupCache(max_bytes=settings.lookup_cache_bytes)
        pullthrough = PullThrough(services, fetcher, on_stale=metrics.stale_served)
        changes = ChangeFeed(db, worker, grace=settings.cache_grace)
        authenticator = Authenticator(settings, db, secrets)
        changes.subscribe(lambda key: follow_change(key, lookups, pullthrough, authenticator))
        await changes.start()
        space = SpaceKeeper(services)
        fetcher.on_stored.append(space.stored)
        space.on_evict.append(lambda _digest, size: metrics.evicted(size))
        # After a sync, the base paths following the repository serve its new version.
        sync_task.register(tasks, services, fetcher,
                           synced=lambda: changes.announce(TARGETS))
        space_tasks.register(tasks, services, space)
        register_verify(tasks, db, store)
        lazy = LazyStore(services, fetcher)
        pending = PendingManifests(services)  # the platform filter's manifests, on demand
        transfer_tasks.register(tasks, services, lazy,
                                imported=lambda: changes.announce(TARGETS), pending=pending)
        app[STATE] = AppState(services, fetcher, tasks, lookups,
                              authenticator, lazy, pullthrough, space, changes,
                              pending, Prefetcher(services, fetcher))
        space.start()
        sweeper = StagingSweeper(services)
        sweeper.start()
        # Scheduled syncs (`sync_interval`): each tick claimed by one process.
        scheduler = Scheduler(db, tasks.submit)
        scheduler.start()
        try:
            yield
        finally:
            await scheduler.close()
            await sweeper.close()
            await tasks.shutdown()
            await changes.close()
            await pullthrough.close()
            if internal is not None:
                await internal.close()
            await app[STATE].pending.close()
            await app[STATE].prefetch.close()
            await fetcher.close()
            if peer_session is not None:
                await peer_session.close()
            await space.close()
            await session.close()
            await store.close()
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
