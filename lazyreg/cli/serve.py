"""`lazyreg serve`: run the server. The one command that is not a REST client.

Only the flags given go into the settings, so that LAZYREG_* variables and the
TOML config fill the rest. The server's modules are imported when the command
runs, so that the client commands never load them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from lazyreg.cli.client import CliError


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [5000]")] = None,
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
    cluster_listen: Annotated[str | None, typer.Option(
        help="HOST:PORT of the internal endpoint peers read downloads from (a cluster node;"
             " needs LAZYREG_CLUSTER_SECRET)")] = None,
    cluster_url: Annotated[str | None, typer.Option(
        help="How peers reach --cluster-listen [http://HOST:PORT of it]")] = None,
) -> None:
    """Run the server: the OCI registry (/v2) and the management API (/api/v1)."""
    from pydantic import ValidationError

    from lazyreg.config import Settings
    from lazyreg.serve import StartRefused
    from lazyreg.serve import serve as run

    flags = {"host": host, "port": port, "data_dir": data_dir, "database_url": database_url,
             "storage_url": storage_url,
             "tls_cert": tls_cert, "tls_key": tls_key, "auth": auth, "log_format": log_format,
             "cluster_listen": cluster_listen, "cluster_url": cluster_url}
    given: dict[str, Any] = {k: v for k, v in flags.items() if v is not None}
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CliError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise CliError("--tls-cert and --tls-key go together")
    try:
        run(settings)
    except StartRefused as exc:
        raise CliError(str(exc)) from None
