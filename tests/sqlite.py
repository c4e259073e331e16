"""A fresh, migrated SQLite database per test, copied from one migrated once per session.

Migrating from scratch costs a test far more than copying a file.
"""

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


def seeded(data_dir: Path, template: Path) -> Path:
    """`data_dir` holding a copy of the migrated database, for an app to start on quickly."""
    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, data_dir / "lazyreg.db")
    return data_dir


def fresh_database(template: Path, directory: Path) -> Database:
    path = directory / "lazyreg.db"
    shutil.copyfile(template, path)
    return Database(f"sqlite:///{path}")
