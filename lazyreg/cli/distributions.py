"""`lazyreg distribution ...`: where repositories are served to clients."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer

from lazyreg.cli.client import CliError, quote
from lazyreg.cli.context import cli_of
from lazyreg.cli.options import Limit, Name, Offset, given, options_from
from lazyreg.cli.render import Column, col

app = typer.Typer(help="Where repositories are served to clients.", no_args_is_help=True)

COLUMNS: tuple[Column, ...] = (
    col("name"), col("base_path", "base path"),
    ("repository", lambda d: f"pull-through: {d['remote']}" if d.get("pull_through")
     else d["repository"]),
    ("version", lambda d: "-" if d.get("pull_through") else d["repository_version"]
     if d["repository_version"] is not None else "latest"),
    col("private"))


@dataclass
class DistributionFields:
    """A distribution's fields as typed on the command line; None is "not given"."""

    base_path: Annotated[str | None, typer.Option(help="The name clients pull")] = None
    repository: Annotated[str | None, typer.Option(help="The repository to serve")] = None
    repository_version: Annotated[int | None, typer.Option(
        "--version", help="Pin this version (default: latest)")] = None
    private: Annotated[bool | None, typer.Option("--private/--public")] = None
    readers: Annotated[list[str] | None, typer.Option(
        "--reader", help="User who may pull it when private; repeat for several"
        " (an update replaces the readers)")] = None
    pull_through: Annotated[bool | None, typer.Option(
        "--pull-through/--no-pull-through", help="Serve the remote's whole upstream under"
        " the base path, each repository fetched on its first pull")] = None
    remote: Annotated[str | None, typer.Option(
        help="Pull-through: the remote to pull through")] = None
    anonymous_pull_through: Annotated[bool | None, typer.Option(
        "--anonymous-pull-through/--no-anonymous-pull-through",
        help="Pull-through with --auth on: may anonymous clients make it fetch new content")
                                      ] = None


@app.command("create")
@options_from(DistributionFields)
def create(ctx: typer.Context, name: Name, fields: DistributionFields) -> None:
    """Serve a repository at a base path, or (--pull-through --remote R) a whole upstream."""
    cli = cli_of(ctx)
    cli.emit_record(cli.client.post("distributions/", {"name": name, **given(fields)}))


@app.command("update")
@options_from(DistributionFields)
def update(ctx: typer.Context, name: Name, fields: DistributionFields,
           latest: Annotated[bool, typer.Option(help="Unpin: serve the latest version")
                             ] = False) -> None:
    """Change the given fields of a distribution."""
    cli = cli_of(ctx)
    if latest and fields.repository_version is not None:
        raise CliError("--latest and --version exclude each other")
    changes = given(fields)
    if latest:
        changes["repository_version"] = None
    if not changes:
        raise CliError("nothing to update: give at least one option")
    cli.emit_record(cli.client.patch(f"distributions/{quote(name)}/", changes))


@app.command("list")
def list_(ctx: typer.Context, limit: Limit = 100, offset: Offset = 0) -> None:
    """List distributions."""
    cli_of(ctx).page("distributions/", COLUMNS, limit=limit, offset=offset)


@app.command("show")
def show(ctx: typer.Context, name: Name) -> None:
    """Show a distribution."""
    cli_of(ctx).show(f"distributions/{quote(name)}/")


@app.command("delete")
def delete(ctx: typer.Context, name: Name) -> None:
    """Delete a distribution (the repository stays)."""
    cli_of(ctx).delete(f"distributions/{quote(name)}/", f"deleted distribution {name}")
