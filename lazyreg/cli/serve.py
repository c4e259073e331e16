"""`lazyreg serve`: run the server. The one command that is not a REST client.

Only the flags given go into the settings, so that LAZYREG_* variables and the
TOML config (`--config`) fill the rest (`lazyreg.configfile`). Once they are
valid, the process becomes the server (`exec`, same process id, for systemd and
container runtimes): a fresh interpreter that reads them back from LAZYREG_*
variables and never loads the command line's modules (typer, rich and click:
4.5 MiB of a server's memory). Its start-up errors are one line and exit 78.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lazyreg.cli.client import CliError

if TYPE_CHECKING:
    from lazyreg.config import Settings

SUPERVISOR = "from lazyreg.workers import main; main()"  # --workers N: N servers

ConfigFile = Annotated[Path | None, typer.Option(
    "--config", help="TOML file of settings; LAZYREG_* variables and flags override it"
                     " [$LAZYREG_CONFIG]")]


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(
        help="Port to listen on; 0: a free one, printed [5000]")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Database and storage [./lazyreg-data]")
                        ] = None,
    database_url: Annotated[str | None, typer.Option(help="postgresql://... to scale out")
                            ] = None,
    storage_url: Annotated[str | None, typer.Option(
        help="s3://bucket/prefix: blobs in an object store [the data dir]")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate: serve HTTPS")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert")] = None,
    auth: Annotated[str | None, typer.Option(
        help="on: users and tokens; off [default]: everyone is admin, loopback only")] = None,
    log_format: Annotated[str | None, typer.Option(
        help="Log lines as text or json (one object a line) [text]")] = None,
    migrate: Annotated[bool | None, typer.Option(
        "--migrate", help="Bring an older database schema up to date first (else refuse)",
        show_default=False)] = None,
    workers: Annotated[str | None, typer.Option(
        help="Server processes on the port: a number, or auto (one per core) [1]")] = None,
    cluster_listen: Annotated[str | None, typer.Option(
        help="HOST:PORT of the internal endpoint peers read downloads from (a cluster node;"
             " needs LAZYREG_CLUSTER_SECRET)")] = None,
    cluster_url: Annotated[str | None, typer.Option(
        help="How peers reach --cluster-listen [http://HOST:PORT of it]")] = None,
    config: ConfigFile = None,
) -> None:
    """Run the server: the OCI registry (/v2) and the management API (/api/v1)."""
    from lazyreg.configfile import as_environment
    from lazyreg.supervisor import SERVER, worker_count

    flags = {"host": host, "port": port, "data_dir": data_dir, "database_url": database_url,
             "storage_url": storage_url,
             "tls_cert": tls_cert, "tls_key": tls_key, "auth": auth, "log_format": log_format,
             "migrate": migrate, "cluster_listen": cluster_listen, "cluster_url": cluster_url,
             "workers": workers}
    settings = load_settings(flags, config)
    env = {**os.environ, **as_environment(settings)}
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        code = SUPERVISOR if worker_count(settings.workers) > 1 else SERVER
        os.execve(sys.executable, [sys.executable, "-c", code, "serve"], env)
    except OSError as exc:
        raise CliError(f"cannot start the server ({sys.executable}): {exc}") from None


def load_settings(flags: dict[str, Any], config: Path | None) -> Settings:
    """The settings in force; a fault is one CliError line naming the key."""
    from lazyreg.config import EX_CONFIG
    from lazyreg.configfile import ConfigError, load

    given = {k: v for k, v in flags.items() if v is not None}
    try:
        return load(given, config).settings
    except ConfigError as exc:
        raise CliError(str(exc), EX_CONFIG) from None
