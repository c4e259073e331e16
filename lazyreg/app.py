"""The aiohttp application: one port for /v2 (registry) and /api/v1 (management).

The lifespan owns the database, the storage, the upstream HTTP session, the
fetcher and the task runner; errors are rendered here and nowhere else.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web
from pydantic import ValidationError

from lazyreg import api, registry
from lazyreg.cache import LookupCache
from lazyreg.check import adopt_orphan_files
from lazyreg.config import Settings
from lazyreg.db.engine import Database
from lazyreg.errors import ApiError, RegistryError
from lazyreg.fetch import Fetcher
from lazyreg.observe import requests as observe
from lazyreg.observe.keys import METRICS
from lazyreg.services import Services
from lazyreg.state import STATE, AppState
from lazyreg.storage.filesystem import FilesystemStore
from lazyreg.tasks.runner import TaskRunner
from lazyreg.upstream.pool import UpstreamPool

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def render_registry_error(exc: RegistryError) -> web.Response:
    body = {"errors": [{"code": exc.code, "message": exc.message, "detail": exc.detail}]}
    headers = {"Docker-Distribution-API-Version": "registry/2.0"}
    return web.json_response(body, status=exc.status, headers=headers)


def render_api_error(status: int, message: str, field: str | None) -> web.Response:
    return web.json_response({"detail": message, "field": field}, status=status)


def render_validation_error(exc: ValidationError) -> web.Response:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or None
    message = f"{field}: {first['msg']}" if field else first["msg"]
    errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
              for e in exc.errors()]
    return web.json_response({"detail": message, "field": field, "errors": errors}, status=400)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RegistryError as exc:
        return render_registry_error(exc)
    except ApiError as exc:
        return render_api_error(exc.status, exc.message, exc.field)
    except ValidationError as exc:
        return render_validation_error(exc)
    except web.HTTPException as exc:
        if request.path.startswith("/v2"):
            code = "UNSUPPORTED" if exc.status == 405 else "NAME_UNKNOWN"
            return render_registry_error(RegistryError(code, exc.reason, status=exc.status))
        if exc.status >= 400:
            return render_api_error(exc.status, exc.reason, None)
        raise


@web.middleware
async def forget_targets(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A management change may move what a base path serves: drop the cached answers."""
    response = await handler(request)
    if request.method not in ("GET", "HEAD") and request.path.startswith("/api/"):
        request.app[STATE].lookups.invalidate_targets()
    return response


def make_lifespan(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.resolved_database_url)
        db.migrate()
        store = FilesystemStore(settings.storage_dir)
        cleaned = store.clean_staging()
        adopted = adopt_orphan_files(db, store)
        if cleaned or adopted:
            log.info("start-up repair: removed %d staging files of dead processes,"
                     " adopted %d stored files that had no artifact row", cleaned, adopted)
        timeout = aiohttp.ClientTimeout(total=None, connect=30, sock_read=120)
        # A large read buffer: the default 64 KiB pauses the socket many times per blob.
        session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False,
                                        read_bufsize=4 * 1024 * 1024,
                                        connector=aiohttp.TCPConnector(limit=0))
        metrics = app[METRICS]
        services = Services(settings, db, store, UpstreamPool(session, observer=metrics))
        tasks = TaskRunner(services, observer=metrics)
        await tasks.recover()
        fetcher = Fetcher(services)
        app[STATE] = AppState(services, fetcher, tasks, LookupCache())
        try:
            yield
        finally:
            await tasks.shutdown()
            await fetcher.close()
            await session.close()
            db.dispose()
    return lifespan


def create_app(settings: Settings) -> web.Application:
    # request_ids first: its id and clock cover everything, errors rendered included.
    app = web.Application(middlewares=[observe.request_ids, error_middleware, forget_targets],
                          client_max_size=16 * 1024 * 1024)
    observe.setup(app, settings)  # metrics, /metrics, /healthz, /readyz, the status page at /
    app.cleanup_ctx.append(make_lifespan(settings))
    registry.setup_routes(app)
    api.setup_routes(app)
    return app
