"""`lazyreg user ...`, `lazyreg login` and `lazyreg logout`: who uses the server.

`login` trades a username and password (asked for, or read from stdin) for
an API token and keeps it for the server in a 0600 file (`lazyreg.cli.logins`);
every later command sends it. `LAZYREG_TOKEN` overrides it.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from lazyreg.cli import logins
from lazyreg.cli.client import Client, CliError, quote
from lazyreg.cli.context import cli_of
from lazyreg.cli.options import Limit, Name, Offset
from lazyreg.cli.render import Column, col

app = typer.Typer(help="Users of the API and readers of private distributions.",
                  no_args_is_help=True)

COLUMNS: tuple[Column, ...] = (col("username"), col("role"), col("created"))
Role = Annotated[str | None, typer.Option(help="admin or viewer")]
PasswordStdin = Annotated[bool, typer.Option(help="Read the password from stdin")]
TOKEN_LIFETIME = 30 * 86400


def read_password(from_stdin: bool, confirm: bool = True) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=confirm)
    return password


@app.command("create")
def create(ctx: typer.Context, name: Name, role: Role = "viewer",
           password_stdin: PasswordStdin = False) -> None:
    """Create a user (asks for the password, or reads it from stdin)."""
    cli = cli_of(ctx)
    body = {"username": name, "password": read_password(password_stdin), "role": role}
    cli.emit_record(cli.client.post("users/", body))


@app.command("update")
def update(ctx: typer.Context, name: Name, role: Role = None,
           password: Annotated[bool, typer.Option(help="Set a new password (asked for)")
                               ] = False,
           password_stdin: PasswordStdin = False) -> None:
    """Change a user's role or password."""
    cli = cli_of(ctx)
    body: dict[str, Any] = {"role": role} if role else {}
    if password or password_stdin:
        body["password"] = read_password(password_stdin)
    if not body:
        raise CliError("nothing to update: give --role or --password")
    cli.emit_record(cli.client.patch(f"users/{quote(name)}/", body))


@app.command("list")
def list_(ctx: typer.Context, limit: Limit = 100, offset: Offset = 0) -> None:
    """List users."""
    cli_of(ctx).page("users/", COLUMNS, limit=limit, offset=offset)


@app.command("show")
def show(ctx: typer.Context, name: Name) -> None:
    """Show a user."""
    cli_of(ctx).show(f"users/{quote(name)}/")


@app.command("delete")
def delete(ctx: typer.Context, name: Name) -> None:
    """Delete a user."""
    cli_of(ctx).delete(f"users/{quote(name)}/", f"deleted user {name}")


def login(ctx: typer.Context,
          username: Annotated[str, typer.Option("--username", "-u", help="Your user name")
                              ] = "admin",
          password_stdin: PasswordStdin = False,
          expires_in: Annotated[int, typer.Option(help="Seconds the token stays valid")
                                ] = TOKEN_LIFETIME) -> None:
    """Get an API token and keep it (0600, in ~/.config/lazyreg) for the next commands."""
    cli = cli_of(ctx)
    password = read_password(password_stdin, confirm=False)
    server = cli.client.server
    answer = Client(server, basic=(username, password)).post("tokens/",
                                                             {"expires_in": expires_in})
    path = logins.store(server, username, answer["token"], answer["expires"])
    cli.emit({"server": server, "username": username, "expires": answer["expires"],
              "stored_in": str(path)},
             lambda d: cli.out.print(f"logged in to {server} as {username} until"
                                     f" {d['expires']}", markup=False))


def logout(ctx: typer.Context) -> None:
    """Forget the token `lazyreg login` stored for this server."""
    cli = cli_of(ctx)
    forgotten = logins.forget(cli.client.server)
    cli.emit({"server": cli.client.server, "logged_out": forgotten},
             lambda d: cli.out.print("logged out" if forgotten else "was not logged in"))
