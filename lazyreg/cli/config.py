"""`lazyreg config show|check`: the server's settings, without a server.

`show` prints the settings a `lazyreg serve` started here with the same file,
environment and flags would use, as TOML, each with where it came from, and
secrets redacted. `check FILE` validates a config file: the first unknown key
or bad value is one line naming the key, and the exit status is 1.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from lazyreg.cli.client import CliError
from lazyreg.cli.serve import ConfigFile

app = typer.Typer(help="The server's settings: what is in force, and checking a file.",
                  no_args_is_help=True)


@app.command()
def show(config: ConfigFile = None) -> None:
    """Print the settings in force (file < LAZYREG_* < flags), secrets redacted."""
    from lazyreg.configfile import ConfigError, load, render, unknown_variables

    try:
        loaded = load({}, config)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    for name in unknown_variables(os.environ):
        print(f"# warning: {name} is not a lazyreg setting: it is ignored")
    for line in render(loaded):
        print(line)


@app.command()
def check(file: Annotated[Path, typer.Argument(help="The TOML file to check")]) -> None:
    """Check a config file: exit 1 with one line naming the first bad key."""
    from lazyreg.configfile import ConfigError, check_file

    try:
        check_file(file)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    print(f"{file}: ok")
