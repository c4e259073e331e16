"""The first process of `lazyreg serve --workers N`: it checks, then supervises.

It never loads the application (aiohttp, SQLAlchemy, the server's modules):
a child process checks the database schema (and migrates it with `migrate`)
once for all workers, then `lazyreg.supervisor` starts the workers, each a
fresh interpreter running `lazyreg.serve.main`. What it holds is the
interpreter, pydantic and the settings.

Also here, for a supervisor and a single server alike: the banner line, the
notifications to systemd, and the warning that names an unknown variable.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable

from lazyreg import supervisor
from lazyreg.config import (
    EX_CONFIG,
    Settings,
    StartRefused,
    bind_refusal,
    cluster_refusal,
)
from lazyreg.configfile import ConfigError, as_environment, from_environment, unknown_variables
from lazyreg.observe import logs
from lazyreg.redact import RedactingFilter

# The schema check, in a child process: it loads SQLAlchemy (and Alembic to migrate).
PREPARE = "from lazyreg.serve import prepare; prepare()"

log = logging.getLogger(__name__)


def main() -> None:
    """The process `lazyreg serve --workers N` becomes; its settings are LAZYREG_* variables."""
    # Until the supervisor installs its own handler, SIGTERM must still stop the process:
    # as PID 1 of a container, a process without a handler never receives it.
    signal.signal(signal.SIGTERM, terminated)
    start(lambda settings: run(settings, supervisor.worker_count(settings.workers)))


def start(body: Callable[[Settings], int | None]) -> None:
    """How each process of a server starts (the one `lazyreg serve` becomes, a worker, a
    supervisor, its schema check): the settings from LAZYREG_* variables, `body` with
    them; a refusal, or a variable that does not validate, is one line and exit 78."""
    try:
        code = body(from_environment())
    except (ConfigError, StartRefused, supervisor.SupervisorError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(EX_CONFIG) from None
    if code:
        raise SystemExit(code)


def terminated(signum: int, _frame: object) -> None:
    """A SIGTERM handler for the time before a process installs its own: exit 128 + 15."""
    raise SystemExit(128 + signum)


def run(settings: Settings, count: int) -> int:
    """Check the settings and the schema, then run `count` workers until stopped."""
    refusal = bind_refusal(settings) or cluster_refusal(settings)
    if refusal:
        raise StartRefused(refusal)
    if settings.cluster_listen:
        # Each worker would open its own internal listener on the one address.
        raise StartRefused("--workers above 1 does not go with cluster_listen yet: run one"
                           " server process per cluster node")
    env = as_environment(settings)
    check = subprocess.run([sys.executable, "-c", PREPARE], env={**os.environ, **env},
                           check=False)
    if check.returncode == EX_CONFIG:
        raise SystemExit(EX_CONFIG)  # the child said why, in one line
    if check.returncode != 0:
        raise StartRefused("the database schema could not be checked (the error is above)")
    logs.configure(settings.log_format, settings.log_level, filters=(RedactingFilter(),))
    warn_unknown_variables(log)
    scheme = "https" if settings.tls_cert else "http"
    text = banner(settings, scheme, settings.host, "{port}", count)
    # A worker's stop lasts at most about twice `shutdown_timeout` (lazyreg.serve): then
    # it is killed.
    grace = 2 * settings.shutdown_timeout + 15
    return supervisor.supervise(count, settings.host, settings.port, env, text, grace,
                                on_ready=lambda: sd_notify("READY=1"))


def warn_unknown_variables(logger: logging.Logger) -> None:
    """Name each LAZYREG_* variable that is no setting: a typo would otherwise go unnoticed."""
    for name in unknown_variables(os.environ):
        if not name.startswith(supervisor.OWN_VARIABLES):
            logger.warning("%s is not a lazyreg setting: it is ignored (`lazyreg config show`"
                           " lists the settings)", name)


def banner(settings: Settings, scheme: str, host: str, port: int | str, workers: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    procs = f", {workers} workers" if workers > 1 else ""
    return (f"lazyreg serving {scheme}://{shown}:{port}"
            f" (data: {settings.data_dir.resolve()}, database:"
            f" {settings.resolved_database_url.split('@')[-1]}, storage:"
            f" {settings.storage_url or 'the data directory'}, auth: {settings.auth}{procs})")


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) how the service is doing; nothing outside systemd."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):  # an abstract socket
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(path)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("cannot notify systemd (%s): %s", path, exc)
