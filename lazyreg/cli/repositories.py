"""`lazyreg repository ...`: versioned repositories, their versions, syncing them from a
remote and reclaiming their disk space."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from lazyreg.cli.client import CliError, quote
from lazyreg.cli.context import Cli, cli_of
from lazyreg.cli.follow import run_task
from lazyreg.cli.options import Limit, Name, Offset, given, options_from
from lazyreg.cli.render import Column, col, counts_text

app = typer.Typer(help="Versioned repositories, and syncing them.", no_args_is_help=True)

COLUMNS = (col("name"), col("latest_version", "latest version"),
           col("retain_versions", "retain"), col("description"))
VERSION_COLUMNS: tuple[Column, ...] = (
    col("number", "version"), col("created"),
    ("content", lambda v: counts_text(v["content_counts"])),
    ("added", lambda v: counts_text(v["added"])),
    ("removed", lambda v: counts_text(v["removed"])))


@dataclass
class SyncFields:
    """The body of a sync request, as typed on the command line."""

    remote: Annotated[str, typer.Option(help="The remote to sync from")]
    mirror: Annotated[bool, typer.Option(help="Remove what the upstream no longer has")
                      ] = False


@dataclass
class RepositoryFields:
    """A repository's settable fields; None is "not given"."""

    description: Annotated[str | None, typer.Option()] = None
    retain_versions: Annotated[int | None, typer.Option(
        help="Keep only the newest N versions (and those a distribution pins)")] = None


class _ListByDefault(TyperGroup):
    """`repository versions NAME` lists them; `repository versions delete NAME N` deletes one."""

    # `ctx` is click's Context as typer vendors it: Any rather than a private import.
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["list", *args]
        return super().parse_args(ctx, args)


versions_app = typer.Typer(cls=_ListByDefault, no_args_is_help=True,
                           help="List the versions of a repository (`versions NAME`), or"
                                " delete one (`versions delete NAME NUMBER`).")
app.add_typer(versions_app, name="versions")


@app.command("create")
@options_from(RepositoryFields)
def create(ctx: typer.Context, name: Name, fields: RepositoryFields) -> None:
    """Create an empty repository (version 0)."""
    cli = cli_of(ctx)
    cli.emit_record(cli.client.post("repositories/", {"name": name, **given(fields)}))


@app.command("update")
@options_from(RepositoryFields)
def update(ctx: typer.Context, name: Name, fields: RepositoryFields) -> None:
    """Change the description or retain_versions of a repository."""
    cli = cli_of(ctx)
    changes = given(fields)
    if not changes:
        raise CliError("nothing to update: give at least one option")
    cli.emit_record(cli.client.patch(f"repositories/{quote(name)}/", changes))


@app.command("list")
def list_(ctx: typer.Context, limit: Limit = 100, offset: Offset = 0) -> None:
    """List repositories."""
    cli_of(ctx).page("repositories/", COLUMNS, limit=limit, offset=offset)


@app.command("show")
def show(ctx: typer.Context, name: Name) -> None:
    """Show a repository."""
    cli_of(ctx).show(f"repositories/{quote(name)}/")


@app.command("delete")
def delete(ctx: typer.Context, name: Name) -> None:
    """Delete a repository, its versions and the distributions serving it."""
    cli_of(ctx).delete(f"repositories/{quote(name)}/", f"deleted repository {name}")


@versions_app.command("list")
def versions(ctx: typer.Context, name: Name, limit: Limit = 100, offset: Offset = 0) -> None:
    """List the versions of a repository, newest first."""
    cli_of(ctx).page(f"repositories/{quote(name)}/versions/", VERSION_COLUMNS,
                     limit=limit, offset=offset)


@versions_app.command("delete")
def delete_version(ctx: typer.Context, name: Name,
                   number: Annotated[int, typer.Argument(help="The version number")]) -> None:
    """Delete a version: not the latest, nor one a distribution pins."""
    cli_of(ctx).delete(f"repositories/{quote(name)}/versions/{number}/",
                       f"deleted version {number} of repository {name}")


@app.command("reclaim")
def reclaim(ctx: typer.Context, name: Name,
            wait: Annotated[bool, typer.Option(help="Follow the task until it ends")] = True
            ) -> None:
    """Delete the stored layers of a repository that can be fetched again on demand."""
    cli = cli_of(ctx)
    run_task(cli, cli.client.post(f"repositories/{quote(name)}/reclaim/", None), wait,
             "reclaim")


@app.command("sync")
@options_from(SyncFields)
def sync(ctx: typer.Context, name: Name, fields: SyncFields,
         wait: Annotated[bool, typer.Option(help="Follow the task until it ends")] = True
         ) -> None:
    """Sync a repository from a remote, showing progress until it ends."""
    cli = cli_of(ctx)
    task = cli.client.post(f"repositories/{quote(name)}/sync/", given(fields))
    run_task(cli, task, wait, "sync", lambda t: report_version(cli, t))


def report_version(cli: Cli, task: dict[str, Any]) -> None:
    """One line: the version the sync created and what changed, or that nothing did."""
    versions = [r for r in task.get("created_resources") or [] if "/versions/" in r]
    if not versions:
        cli.out.print("no changes")
        return
    version = cli.client.get(versions[-1])
    changes = f"added {counts_text(version['added'])}"
    if any(version["removed"].values()):
        changes += f"; removed {counts_text(version['removed'])}"
    cli.out.print(f"created version {version['number']}:"
                  f" {counts_text(version['content_counts'])} ({changes})", markup=False)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_interval(text: str) -> int:
    """Seconds of `30s`, `15m`, `1h`, `2d`, or a bare number of seconds."""
    text = text.strip().lower()
    unit = _UNITS.get(text[-1:])
    number = text[:-1] if unit else text
    if not number.isascii() or not number.isdigit() or len(number) > 9 or int(number) < 1:
        raise CliError(f"--every {text!r}: give a whole number of seconds, or of s, m, h or d"
                       " (30s, 15m, 1h, 2d)")
    return int(number) * (unit or 1)


@app.command("schedule")
def schedule(ctx: typer.Context, name: Name,
             remote: Annotated[str | None, typer.Option(help="The remote to sync from")] = None,
             every: Annotated[str | None, typer.Option(
                 help="How often the server syncs: 30s, 15m, 1h, 2d")] = None,
             mirror: Annotated[bool, typer.Option(
                 help="Remove what the upstream no longer has")] = False,
             off: Annotated[bool, typer.Option("--off", help="Stop the scheduled syncs")
                            ] = False) -> None:
    """Make the server sync a repository from a remote on its own, every interval."""
    cli = cli_of(ctx)
    path = f"repositories/{quote(name)}/schedule/"
    if off:
        if remote or every:
            raise CliError("--off takes no --remote or --every")
        cli.delete(path, f"repository {name} is synced on demand only")
        return
    if not remote or not every:
        raise CliError("give --remote and --every (or --off)")
    body = {"remote": remote, "mirror": mirror, "sync_interval": parse_interval(every)}
    cli.emit_record(cli.client.request("PUT", path, body))


@app.command("export")
def export(ctx: typer.Context, name: Name,
           output: Annotated[Path, typer.Option(
               help="Where the server writes the layout: a directory, or a file ending .tar"
                    " or .tar.gz (a path on the server's machine; it must not exist)")],
           version: Annotated[int | None, typer.Option(
               help="The version to export (default: the latest)")] = None,
           since: Annotated[int | None, typer.Option(
               help="Write only what this older version lacks (incremental)")] = None,
           stored_only: Annotated[bool, typer.Option(
               help="Fail, listing them, if blobs are not stored, instead of fetching them")
           ] = False,
           wait: Annotated[bool, typer.Option(help="Follow the task until it ends")] = True
           ) -> None:
    """Export a repository version as an OCI image layout (skopeo, umoci and import read it)."""
    cli = cli_of(ctx)
    if version is None:
        version = int(cli.client.get(f"repositories/{quote(name)}/")["latest_version"])
    body: dict[str, Any] = {"output": str(output.absolute()), "stored_only": stored_only}
    if since is not None:
        body["since"] = since
    task = cli.client.post(f"repositories/{quote(name)}/versions/{version}/export/", body)
    run_task(cli, task, wait, "export")


@app.command("import")
def import_(ctx: typer.Context, name: Name,
            input_: Annotated[Path, typer.Option(
                "--input", help="An OCI image layout: a directory, a .tar or a .tar.gz"
                                " (a path on the server's machine)")],
            wait: Annotated[bool, typer.Option(help="Follow the task until it ends")] = True
            ) -> None:
    """Import an OCI image layout as the repository's new version (all or nothing)."""
    cli = cli_of(ctx)
    task = cli.client.post(f"repositories/{quote(name)}/import/",
                           {"input": str(input_.absolute())})
    run_task(cli, task, wait, "import", lambda t: report_version(cli, t))
