"""`lazyreg orphans cleanup`: remove content and artifacts that no repository version holds."""

from __future__ import annotations

from typing import Annotated

import typer

from lazyreg.cli.context import cli_of
from lazyreg.cli.follow import run_task

app = typer.Typer(help="Content and artifacts that no repository version holds.",
                  no_args_is_help=True)


@app.command("cleanup")
def cleanup(ctx: typer.Context,
            protection_time: Annotated[int | None, typer.Option(
                help="Seconds: what was created, stored or used more recently stays"
                     " (default: the server's, one hour)")] = None,
            wait: Annotated[bool, typer.Option(help="Follow the task until it ends")] = True
            ) -> None:
    """Remove orphan content and artifacts older than the protection time."""
    cli = cli_of(ctx)
    body = {} if protection_time is None else {"protection_time": protection_time}
    run_task(cli, cli.client.post("orphans/cleanup/", body), wait, "orphan cleanup")
