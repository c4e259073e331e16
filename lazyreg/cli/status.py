"""`lazyreg status` and `lazyreg check`: the server as a whole."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from lazyreg.cli import render
from lazyreg.cli.context import cli_of

MAX_SHOWN = 20  # problems printed per kind; -o json has them all


def status(ctx: typer.Context) -> None:
    """Show the server's version, backends and what storage holds."""
    cli = cli_of(ctx)

    def show(s: dict[str, Any]) -> None:
        render.record(cli.out, {"server": cli.client.server, "version": s["version"],
                                "database": s["database"], "storage": s["storage"]["path"],
                                **s["counts"]})
        render.summary_table(cli.out, s["artifacts"])
        render.cache_table(cli.out, s["cache"])
    cli.emit(cli.client.get("status/"), show)


def check(ctx: typer.Context,
          verify: Annotated[bool, typer.Option(help="Also hash every stored file")] = False
          ) -> None:
    """Compare database and storage; exit 1 if anything is wrong."""
    cli = cli_of(ctx)
    report = cli.client.get("check/", verify="true" if verify else None)

    def show(r: dict[str, Any]) -> None:
        problems = {k: v for k, v in r.items() if isinstance(v, list) and v}
        render.record(cli.out, {"ok": r["ok"], "artifacts": r["artifacts"], "files": r["files"],
                                "verified": r["verified"],
                                **{k: len(v) for k, v in problems.items()}})
        for kind, items in problems.items():
            for item in items[:MAX_SHOWN]:
                cli.out.print(f"{kind}: {item}", markup=False)
    cli.emit(report, show)
    if not report["ok"]:
        raise typer.Exit(1)
