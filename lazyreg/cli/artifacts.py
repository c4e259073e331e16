"""`lazyreg artifact ...`: what storage holds."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from lazyreg.cli import render
from lazyreg.cli.context import cli_of
from lazyreg.cli.options import Limit, Offset
from lazyreg.cli.render import col, human_bytes

app = typer.Typer(help="What storage holds.", no_args_is_help=True)

COLUMNS = (col("digest"), col("kind"), ("size", lambda a: human_bytes(a["size"])),
           col("created"))


@app.command("list")
def list_(ctx: typer.Context,
          kind: Annotated[str | None, typer.Option(help="manifest, config or layer")] = None,
          limit: Limit = 100, offset: Offset = 0) -> None:
    """Show what storage holds: totals by kind, then the artifacts."""
    cli = cli_of(ctx)

    def show(page: dict[str, Any]) -> None:
        render.summary_table(cli.out, page["summary"])
        render.rows(cli.out, page, COLUMNS)
    cli.emit(cli.client.get("artifacts/", kind=kind, limit=limit, offset=offset), show)
