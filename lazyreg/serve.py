"""`lazyreg serve`: run the application on one port, HTTP or HTTPS.

HTTP-level bounds, so that no client can hold a connection or a worker for
long without sending a request:
- `IDLE_TIMEOUT`: aiohttp's keep-alive timer, which runs from the moment a
  connection opens (or its last response ends) until a complete request head
  has arrived. It therefore bounds both an idle keep-alive connection and a
  request head sent slowly (slowloris); data trickling in does not reset it.
- Request line, header field and header count limits of aiohttp's parser,
  set here explicitly (a request over them gets a 400).
Request bodies are bounded in `lazyreg.api.limits` and read within the
`body_timeout` setting (`lazyreg.bodies`). A stop (SIGTERM, SIGINT) closes
the listening socket, waits up to `shutdown_timeout` seconds for requests in
progress, then cancels those left (aiohttp gives them as long again to end),
then closes the database: a stop takes at most about twice `shutdown_timeout`
plus the cleanup, whatever clients do.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import sys
import traceback

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import SecretStr

from lazyreg import memory, supervisor
from lazyreg.app import create_app
from lazyreg.auth.startup import open_secrets
from lazyreg.config import Settings, bind_refusal
from lazyreg.db.engine import Database, is_current, make_engine
from lazyreg.observe import logs
from lazyreg.redact import RedactingFilter
from lazyreg.storage.base import Misconfigured

IDLE_TIMEOUT = 15.0
MAX_REQUEST_LINE = 8190  # bytes; also bounds a URL, so every name and query in it
MAX_HEADER_FIELD = 8190  # bytes of one header (a bearer token is a few KiB)
MAX_HEADERS = 128
# Seconds aiohttp goes on reading (and dropping) a body that a handler left unread, such
# as one cut off at the body deadline, before it closes the connection (its default is
# 10): the answer is not lost to a reset, and a dripping client is not kept much longer.
LINGER_TIME = 2.0


class StartRefused(Exception):
    """Settings a server must not start with; the message says why and what to do."""


class MalformedRequestsInOneLine(logging.Filter):
    """aiohttp logs a request its parser refused (and answered 400) as an ERROR with a
    traceback, as if the server had failed: it is the client's error, and one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and exc.code < 500:
            client = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg, record.args = "malformed request from %s refused (%d): %s", (
                client, exc.code, exc.message.splitlines()[0] if exc.message else "")
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info, record.exc_text = None, None
            return logging.getLogger(record.name).isEnabledFor(logging.INFO)
        return True


async def _ready(_app: web.Application) -> None:
    memory.trim()  # start-up's garbage: an idle worker holds what it uses, no more
    supervisor.say_ready()  # after the lifespan started: a worker's supervisor starts the next


def _migrate_in_child(settings: Settings) -> None:
    """Bring the schema to the newest migration in a forked child, if it is behind.

    Alembic costs a process 10 MiB for the rest of its life once loaded: the
    child loads it, migrates and exits, and the server (each worker, with
    `--workers`) finds the schema current and never loads it.
    """
    engine = make_engine(settings.resolved_database_url)
    try:
        if is_current(engine):
            return
    finally:
        engine.dispose()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()  # no thread runs yet
    if pid == 0:
        code = 1
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            db = Database(settings.resolved_database_url)
            db.migrate(open_secrets(settings))
            db.dispose()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise StartRefused("the database could not be migrated (the error is above)")


def _as_environment(settings: Settings) -> dict[str, str]:
    """The settings as LAZYREG_* variables: a worker reads them as its own (every one
    set, so that they win over a config file's), and never loads the command line."""
    env = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, list | tuple | dict | set):
            text = json.dumps(sorted(value) if isinstance(value, set) else value, default=str)
        else:
            text = str(value)
        env[f"LAZYREG_{name.upper()}"] = text
    return env


def worker_main() -> None:
    """A worker of `lazyreg serve --workers N`, started by its supervisor."""
    try:
        serve(Settings())
    except StartRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def _banner(settings: Settings, scheme: str, port: int | str, workers: int) -> str:
    procs = f", {workers} workers" if workers > 1 else ""
    return (f"lazyreg serving {scheme}://{settings.host}:{port}"
            f" (data: {settings.data_dir.resolve()}, database:"
            f" {settings.resolved_database_url.split('@')[-1]}, storage:"
            f" {settings.storage_url or 'the data directory'}, auth: {settings.auth}{procs})")


def serve(settings: Settings) -> None:
    refusal = bind_refusal(settings)
    if refusal:
        raise StartRefused(refusal)
    memory.few_arenas()
    # No URL credentials in any log line.
    logs.configure(settings.log_format, settings.log_level, filters=(RedactingFilter(),))
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestsInOneLine())
    count = supervisor.worker_count(settings.workers)
    if count > 1 and not supervisor.is_worker():  # see lazyreg/supervisor.py
        _migrate_in_child(settings)  # once, for every worker
        scheme = "https" if settings.tls_cert else "http"
        banner = _banner(settings, scheme, "{port}", count)
        # A stop lasts at most about twice `shutdown_timeout` (see above): then it kills.
        grace = 2 * settings.shutdown_timeout + 15
        supervisor.supervise(count, settings.host, settings.port, _as_environment(settings),
                             banner, grace)
        return
    ssl_context = None
    if settings.tls_cert and settings.tls_key:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(settings.tls_cert, settings.tls_key)
    scheme = "https" if ssl_context else "http"
    port = supervisor.worker_port()  # a worker: its supervisor's port, with SO_REUSEPORT
    if port is None:
        port = settings.port
        print(_banner(settings, scheme, port, 1), flush=True)
        _migrate_in_child(settings)  # (a worker's supervisor did it)
    app = create_app(settings)
    app.on_startup.append(_ready)
    try:
        web.run_app(app, host=settings.host, port=port, reuse_port=supervisor.is_worker(),
                    ssl_context=ssl_context, print=None, access_log=None,
                    handler_cancellation=False, keepalive_timeout=IDLE_TIMEOUT,
                    shutdown_timeout=settings.shutdown_timeout, lingering_time=LINGER_TIME,
                    max_line_size=MAX_REQUEST_LINE, max_field_size=MAX_HEADER_FIELD,
                    max_headers=MAX_HEADERS)
    except Misconfigured as exc:  # found at start-up: one line, naming the setting
        raise StartRefused(str(exc)) from None
