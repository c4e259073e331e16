"""`lazyreg token ...`: the API and refresh tokens that stand, and revoking them.

A user lists and revokes their own; an admin anyone's (`--user` narrows the
list). Revoking a token revokes the tokens minted with it. `lazyreg login`
mints them; a password or role change ends them all.
"""

from __future__ import annotations

from typing import Annotated

import typer

from lazyreg.cli.client import quote
from lazyreg.cli.context import cli_of
from lazyreg.cli.options import Limit, Offset
from lazyreg.cli.render import col

app = typer.Typer(help="API and refresh tokens: list and revoke.", no_args_is_help=True)

COLUMNS = (col("id"), col("username"), col("kind"), col("created"), col("expires"),
           col("parent"))
TokenId = Annotated[str, typer.Argument(help="Token id (from `lazyreg token list`)")]


@app.command("list")
def list_(ctx: typer.Context,
          user: Annotated[str | None, typer.Option(help="Only this user's tokens")] = None,
          limit: Limit = 100, offset: Offset = 0) -> None:
    """List the tokens that still stand, newest first."""
    cli_of(ctx).page("tokens/", COLUMNS, user=user, limit=limit, offset=offset)


@app.command("revoke")
def revoke(ctx: typer.Context, token_id: TokenId) -> None:
    """Revoke a token, and the tokens minted with it."""
    cli_of(ctx).delete(f"tokens/{quote(token_id)}/", f"revoked token {token_id}")
