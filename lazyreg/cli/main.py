"""The `lazyreg` command: global options, the command groups, and `main`.

`main` is the one place that turns failures into output: whatever goes wrong
(a `CliError` from the client or a command, a usage error, Ctrl-C, a bug)
ends as one `error: ...` line on stderr and a non-zero exit status, never a
traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated

import typer

import lazyreg
from lazyreg.cli import (
    artifacts,
    config,
    db,
    distributions,
    logins,
    orphans,
    remotes,
    repositories,
    status,
    tasks,
    tokens,
    users,
)
from lazyreg.cli.client import Client, CliError
from lazyreg.cli.context import Cli
from lazyreg.cli.render import Output
from lazyreg.cli.serve import serve

DEFAULT_SERVER = "http://127.0.0.1:5000"

app = typer.Typer(help="Manage lazily mirrored container repositories.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.add_typer(remotes.app, name="remote")
app.add_typer(repositories.app, name="repository")
app.add_typer(distributions.app, name="distribution")
app.add_typer(artifacts.app, name="artifact")
app.add_typer(orphans.app, name="orphans")
app.add_typer(tasks.app, name="task")
app.add_typer(users.app, name="user")
app.add_typer(tokens.app, name="token")
app.add_typer(config.app, name="config")
app.add_typer(db.app, name="db")
app.command()(users.login)
app.command()(users.logout)
app.command()(status.status)
app.command()(status.check)
app.command()(serve)


def _version(value: bool) -> None:
    if value:
        print(f"lazyreg {lazyreg.__version__}")
        raise typer.Exit()


@app.callback()
def options(
    ctx: typer.Context,
    server: Annotated[str, typer.Option(envvar="LAZYREG_SERVER",
                                        help="URL of the lazyreg server")] = DEFAULT_SERVER,
    output: Annotated[Output, typer.Option("-o", "--output",
                                           help="table for people, json for scripts")
                      ] = Output.table,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit")] = False,
) -> None:
    ctx.obj = Cli(Client(server, logins.token_for(server)), output)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; every error becomes one line on stderr."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=list(argv) if argv is not None else None, prog_name="lazyreg",
                            standalone_mode=False)
    except CliError as exc:
        return _fail(str(exc), exc.code)
    except typer.TyperException as exc:  # click's usage errors, in typer's vendored click
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # type: ignore[attr-defined]
            return 2
        return _fail(exc.format_message(), getattr(exc, "exit_code", 2))
    except typer.Abort:
        return _fail("aborted")
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as exc:  # the promise is one line, never a traceback
        return _fail(f"{type(exc).__name__}: {exc}")
    return code if isinstance(code, int) else 0


def _fail(message: str, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code or 1
