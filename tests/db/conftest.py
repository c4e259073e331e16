"""A fresh, migrated SQLite database for each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lazyreg.db.engine import Database
from tests.sqlite import fresh_database


@pytest.fixture
def db(template: Path, tmp_path: Path) -> Iterator[Database]:
    database = fresh_database(template, tmp_path)
    yield database
    database.dispose()
