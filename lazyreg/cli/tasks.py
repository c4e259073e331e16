"""`lazyreg task ...`: the background operations, syncs for now."""

from __future__ import annotations

from typing import Annotated

import typer

from lazyreg.cli.client import quote
from lazyreg.cli.context import cli_of
from lazyreg.cli.options import Limit, Offset
from lazyreg.cli.render import col
from lazyreg.types import TASK_STATES

app = typer.Typer(help="Background operations.", no_args_is_help=True)

COLUMNS = (col("id"), col("kind"), col("state"), col("created"), col("finished"),
           ("repository", lambda t: (t.get("params") or {}).get("repository")),
           # A sync the server started itself (the repository's schedule).
           ("by", lambda t: "schedule" if (t.get("params") or {}).get("scheduled") else ""))
# The server checks the state, so its error names the field and the choices.
StateOpt = Annotated[str | None, typer.Option(
    help=f"{', '.join(TASK_STATES[:-1])} or {TASK_STATES[-1]}")]


@app.command("list")
def list_(ctx: typer.Context, state: StateOpt = None, limit: Limit = 20,
          offset: Offset = 0) -> None:
    """List tasks, newest first."""
    cli_of(ctx).page("tasks/", COLUMNS, state=state, limit=limit, offset=offset)


@app.command("show")
def show(ctx: typer.Context,
         task_id: Annotated[str, typer.Argument(help="Task id")]) -> None:
    """Show a task: state, progress, error, what it created."""
    cli_of(ctx).show(f"tasks/{quote(task_id)}/")
