"""`lazyreg db upgrade`: bring the database schema to this lazyreg's, explicitly.

A server refuses to start on an older schema unless started with `--migrate`;
this is the explicit way, run once after installing a new lazyreg (and after
a backup). It reads the same settings as `lazyreg serve` (file, LAZYREG_*,
flags) to find the database.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lazyreg.cli.client import CliError
from lazyreg.cli.serve import ConfigFile, load_settings

app = typer.Typer(help="The database: schema upgrades.", no_args_is_help=True)


@app.command()
def upgrade(
    data_dir: Annotated[Path | None, typer.Option(help="Database and storage [./lazyreg-data]")
                        ] = None,
    database_url: Annotated[str | None, typer.Option(help="postgresql://...")] = None,
    config: ConfigFile = None,
) -> None:
    """Run the database migrations up to this lazyreg's schema (keeps every row)."""
    from lazyreg.config import StartRefused
    from lazyreg.serve import upgrade_database

    settings = load_settings({"data_dir": data_dir, "database_url": database_url}, config)
    try:
        before, after = upgrade_database(settings)
    except StartRefused as exc:
        raise CliError(str(exc)) from None
    if before.current == after.current:
        print(f"database schema: already at {after.current}")
    else:
        print(f"database schema: {before.current or 'new'} -> {after.current}")
