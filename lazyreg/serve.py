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

Start-up, for supervisors and scripts: the listening socket is bound first, so
that the line "lazyreg serving URL" names the port actually bound (`--port 0`
picks a free one); under systemd (`Type=notify`), READY=1 is sent once the
application has started, and STOPPING=1 when a stop begins. A database whose
schema is older than this lazyreg's is refused unless `migrate` is set (see
`lazyreg.db.schema`). Both the check and the migration run in a forked child when
the schema is not current (Alembic stays out of the server's memory); with
`--workers N`, once for all workers, in a child of the supervisor
(`lazyreg.workers`, which never loads the application).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import ssl
import sys
import traceback

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from lazyreg import memory, supervisor, workers
from lazyreg.app import create_app
from lazyreg.auth.startup import open_secrets
from lazyreg.config import Settings, StartRefused, bind_refusal, cluster_refusal
from lazyreg.db.engine import Database, is_current, make_engine
from lazyreg.db.schema import SchemaState, schema_state
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

log = logging.getLogger(__name__)


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


def schema_refusal(state: SchemaState) -> str | None:
    """Why a server must not start on this database without being told to migrate."""
    if state.up_to_date or state.empty:
        return None
    if state.current is None:
        return ("the database has tables but no lazyreg schema version: it is not a lazyreg"
                " database, or one older than migrations; point --database-url elsewhere")
    if not state.known:
        return (f"the database schema is at revision {state.current}, which this lazyreg"
                f" (schema {state.head}) does not know: it was written by a newer lazyreg;"
                " run that version or newer")
    return (f"the database schema is at revision {state.current}, this lazyreg needs"
            f" {state.head}: back the database up, then run `lazyreg db upgrade`"
            " (or start with --migrate)")


def database_state(settings: Settings) -> SchemaState:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url)
    try:
        return schema_state(db.read_engine)
    finally:
        db.dispose()


def upgrade_database(settings: Settings) -> tuple[SchemaState, SchemaState]:
    """`lazyreg db upgrade`: the schema before and after bringing it to this lazyreg's."""
    before = database_state(settings)
    if before.current is not None and not before.known:
        raise StartRefused(schema_refusal(before) or "unknown schema")
    db = Database(settings.resolved_database_url)
    try:
        db.migrate(open_secrets(settings))
        return before, schema_state(db.read_engine)
    finally:
        db.dispose()


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound and listening: connections queue while the app starts."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise StartRefused(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


async def _ready(_app: web.Application) -> None:
    memory.trim()  # start-up's garbage: an idle worker holds what it uses, no more
    if supervisor.is_worker():
        supervisor.say_ready()  # its supervisor starts the next, and tells systemd at the end
    else:
        workers.sd_notify("READY=1")


async def _stopping(_app: web.Application) -> None:
    workers.sd_notify("STOPPING=1")


def _schema_in_child(settings: Settings) -> None:
    """Refuse an older schema (unless `migrate`), else bring it up to date, in a child.

    Alembic costs a process 10 MiB for the rest of its life once loaded: when
    the schema is current (`is_current` reads one row without it) nothing is
    loaded; else a forked child loads it, checks, migrates and exits.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    try:
        if is_current(engine):
            return
    finally:
        engine.dispose()
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    pid = os.fork()  # no thread runs yet
    if pid == 0:
        os.close(read_end)
        code = 1
        try:
            refusal = None if settings.migrate else schema_refusal(database_state(settings))
            if refusal:
                os.write(write_end, refusal.encode())
                code = 2
            else:
                db = Database(settings.resolved_database_url)
                db.migrate(open_secrets(settings))
                db.dispose()
                code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        said = pipe.read(4096).decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 2:
        raise StartRefused(said)
    if code != 0:
        raise StartRefused("the database could not be migrated (the error is above)")


def main() -> None:
    """The process `lazyreg serve` becomes, and each worker of `--workers N`: the settings
    come from LAZYREG_* variables, all of them set (`lazyreg.configfile.as_environment`).

    A fresh interpreter, without the command line's modules: the server never
    carries typer, rich and click (4.5 MiB a process).
    """
    workers.start(serve)


def prepare() -> None:
    """The schema check of `lazyreg serve --workers N`, in a child of its supervisor (which
    never loads the database code): refuse an older schema, or migrate it, once."""
    workers.start(_schema_in_child)


def serve(settings: Settings) -> None:
    """Run one server process: a server of its own, or a worker of `--workers N`."""
    count = supervisor.worker_count(settings.workers)
    worker = supervisor.is_worker()
    if count > 1 and not worker:  # the supervisor: lazyreg/workers.py
        code = workers.run(settings, count)
        if code:
            raise SystemExit(code)
        return
    # Until aiohttp installs its own handler, SIGTERM must still stop the process: as
    # PID 1 of a container, a process without a handler never receives it.
    signal.signal(signal.SIGTERM, workers.terminated)
    refusal = bind_refusal(settings) or cluster_refusal(settings)
    if refusal:
        raise StartRefused(refusal)
    memory.few_arenas()
    if not worker:  # a worker's supervisor did it, once for all
        _schema_in_child(settings)
    # No URL credentials in any log line.
    logs.configure(settings.log_format, settings.log_level, filters=(RedactingFilter(),))
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestsInOneLine())
    workers.warn_unknown_variables(log)
    scheme = "https" if settings.tls_cert else "http"
    ssl_context = None
    if settings.tls_cert and settings.tls_key:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(settings.tls_cert, settings.tls_key)
    port = supervisor.worker_port()  # a worker: its supervisor's port, with SO_REUSEPORT
    sock = None
    if port is None:
        sock = bind(settings.host, settings.port)
        host, port = sock.getsockname()[:2]
        print(workers.banner(settings, scheme, host, port, 1), flush=True)
    app = create_app(settings)
    app.on_startup.append(_ready)  # after the lifespan's start: the app is ready
    app.on_shutdown.append(_stopping)
    try:
        web.run_app(app, sock=sock, host=settings.host if worker else None,
                    port=port if worker else None, reuse_port=worker or None,
                    ssl_context=ssl_context, print=None, access_log=None,
                    handler_cancellation=False, keepalive_timeout=IDLE_TIMEOUT,
                    shutdown_timeout=settings.shutdown_timeout, lingering_time=LINGER_TIME,
                    max_line_size=MAX_REQUEST_LINE, max_field_size=MAX_HEADER_FIELD,
                    max_headers=MAX_HEADERS)
    except Misconfigured as exc:  # found at start-up: one line, naming the setting
        raise StartRefused(str(exc)) from None
