"""A fresh, migrated SQLite database per test, copied from one migrated once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

from lazyreg.db.engine import Database


def migrated_template(directory: Path) -> Path:
    path = directory / "template.db"
    db = Database(f"sqlite:///{path}")
    db.migrate()
    db.dispose()
    return path


def fresh_database(template: Path, directory: Path) -> Database:
    path = directory / "lazyreg.db"
    shutil.copyfile(template, path)
    return Database(f"sqlite:///{path}")
