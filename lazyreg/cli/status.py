"""`lazyreg status` and `lazyreg check`: the server as a whole."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from lazyreg.cli import render
from lazyreg.cli.client import CliError
from lazyreg.cli.context import Cli, cli_of
from lazyreg.cli.follow import follow

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
          verify: Annotated[bool, typer.Option(
              help="Also hash every stored file: a task on the server (admins), followed"
                   " until it ends; one runs at a time, and a second asker follows it")
          ] = False) -> None:
    """Compare database and storage; exit 1 if anything is wrong."""
    cli = cli_of(ctx)
    report = _verified(cli) if verify else cli.client.get("check/")

    def show(r: dict[str, Any]) -> None:
        problems = {k: v for k, v in r.items() if isinstance(v, list) and v}
        shown: dict[str, Any] = {k: r[k] for k in ("ok", "artifacts", "files", "verified",
                                                   "task") if k in r}
        render.record(cli.out, {**shown, **{k: len(v) for k, v in problems.items()}})
        for kind, items in problems.items():
            for item in items[:MAX_SHOWN]:
                cli.out.print(f"{kind}: {item}", markup=False)
    cli.emit(report, show)
    if not report["ok"]:
        raise typer.Exit(1)


def _verified(cli: Cli) -> dict[str, Any]:
    """Start the verify task (or join the one running), follow it, and read its report:
    each warning is `<kind>: <what>`."""
    task = cli.client.post("check/verify/", None)
    try:
        task = follow(cli, task)
    except KeyboardInterrupt:
        raise CliError(f"stopped waiting; the verify goes on: lazyreg task show {task['id']}"
                       ) from None
    if task["state"] != "completed":
        raise CliError(f"verify {task['state']}: {task.get('error') or 'no error recorded'}")
    problems: dict[str, list[str]] = {}
    for warning in task.get("warnings") or []:
        kind, sep, item = warning.partition(": ")
        problems.setdefault(kind if sep else "other", []).append(item if sep else warning)
    files = (task.get("progress") or {}).get("files") or {}
    return {"ok": not problems, "files": files.get("total", 0), "verified": True,
            "task": task["id"], **problems}
