"""A fresh, migrated SQLite database for each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lazyreg.db.engine import Database
from tests.sqlite import fresh_database, migrated_template


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrated_template(tmp_path_factory.mktemp("template"))


@pytest.fixture
def db(template: Path, tmp_path: Path) -> Iterator[Database]:
    database = fresh_database(template, tmp_path)
    yield database
    database.dispose()
