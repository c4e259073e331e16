"""`lazyreg remote ...`: the upstream registries to sync from.

A remote's settable fields are `RemoteFields`, written once: `create` and
`update` take the same options, and the request body holds what was given.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from lazyreg.cli.client import CliError, quote
from lazyreg.cli.context import cli_of
from lazyreg.cli.options import Limit, Name, Offset, given, options_from
from lazyreg.cli.render import col
from lazyreg.types import Policy

app = typer.Typer(help="Upstream registries to sync from.", no_args_is_help=True)

COLUMNS = (col("name"), col("url"), col("upstream_name", "upstream"), col("policy"),
           col("include_tags", "include"), col("exclude_tags", "exclude"))
Globs = Annotated[list[str] | None, typer.Option(
    help="Tag glob, or re:REGEX (RE2, the whole tag), or (include) a digest to pin;"
    " repeat for several")]
Prefetch = Literal["none", "platform", "all"]
NameGlobs = Annotated[list[str] | None, typer.Option(
    help="Pull-through: glob on upstream repository names; repeat for several")]
Text = Annotated[str | None, typer.Option()]


@dataclass
class RemoteFields:
    """A remote's fields as typed on the command line; None is "not given"."""

    url: Annotated[str | None, typer.Option(
        help="Upstream registry URL, http(s)://host[:port]")] = None
    upstream_name: Annotated[str | None, typer.Option(
        help="Repository name on the upstream, e.g. library/alpine (to sync; a remote of"
        " pull-through distributions needs none)")] = None
    policy: Annotated[Policy | None, typer.Option(help="When blobs are downloaded")] = None
    include_tags: Globs = None
    exclude_tags: Globs = None
    username: Text = None
    password: Text = None
    password_stdin: Annotated[bool, typer.Option(help="Read the password from stdin")] = False
    tls_verify: Annotated[bool | None, typer.Option(
        "--tls-verify/--no-tls-verify", help="Verify the upstream's certificate")] = None
    ca_cert: Annotated[Path | None, typer.Option(
        help="PEM file of CA certificates to trust")] = None
    proxy_url: Text = None
    allow_private_redirects: Annotated[bool | None, typer.Option(
        "--allow-private-redirects/--no-allow-private-redirects",
        help="Follow the upstream's redirects and token realms to loopback, private and"
        " link-local addresses even when its own address is not one")] = None
    download_concurrency: Annotated[int | None, typer.Option(
        help="Parallel downloads (1-64)")] = None
    tag_ttl: Annotated[int | None, typer.Option(
        help="Pull-through: seconds a tag is trusted before it is re-checked (default 300)")
                       ] = None
    negative_ttl: Annotated[int | None, typer.Option(
        help="Pull-through: seconds an upstream 404 is remembered (default 30)")] = None
    include_names: NameGlobs = None
    exclude_names: NameGlobs = None
    platforms: Annotated[list[str] | None, typer.Option(
        "--platform", help="os/arch or os/arch/variant whose index children a sync fetches (the"
        " others on demand); repeat for several")] = None
    prefetch: Annotated[Prefetch | None, typer.Option(
        help="Start an image's layer downloads on its manifest's first GET")] = None


def body(fields: RemoteFields) -> dict[str, Any]:
    """The request body: the fields given, with the password and CA read from where they are."""
    answer = given(fields)
    if answer.pop("password_stdin"):
        answer["password"] = sys.stdin.readline().rstrip("\r\n")
    if fields.ca_cert is not None:
        try:
            answer["ca_cert"] = fields.ca_cert.read_text()
        except OSError as exc:
            raise CliError(f"cannot read --ca-cert {fields.ca_cert}: {exc.strerror}") from None
    return answer


@app.command("create")
@options_from(RemoteFields, required=("url",))
def create(ctx: typer.Context, name: Name, fields: RemoteFields) -> None:
    """Create a remote: an upstream registry (and the repository to sync from it)."""
    cli = cli_of(ctx)
    cli.emit_record(cli.client.post("remotes/", {"name": name, **body(fields)}))


@app.command("update")
@options_from(RemoteFields)
def update(ctx: typer.Context, name: Name, fields: RemoteFields) -> None:
    """Change the given fields of a remote."""
    cli = cli_of(ctx)
    changes = body(fields)
    if not changes:
        raise CliError("nothing to update: give at least one option")
    cli.emit_record(cli.client.patch(f"remotes/{quote(name)}/", changes))


@app.command("list")
def list_(ctx: typer.Context, limit: Limit = 100, offset: Offset = 0) -> None:
    """List remotes."""
    cli_of(ctx).page("remotes/", COLUMNS, limit=limit, offset=offset)


@app.command("show")
def show(ctx: typer.Context, name: Name) -> None:
    """Show a remote (its password never is)."""
    cli_of(ctx).show(f"remotes/{quote(name)}/")


@app.command("delete")
def delete(ctx: typer.Context, name: Name) -> None:
    """Delete a remote."""
    cli_of(ctx).delete(f"remotes/{quote(name)}/", f"deleted remote {name}")
