"""Upgrades: from the last release's schema (0007) with data in it to this lazyreg's head,
every row kept; a server on an older schema refuses to start unless told to migrate.

The 0007 database is tests/db/fixtures/schema-0007.sql, written by a real server
(tests/db/build_schema_0007.py): remotes (one with an encrypted password), an on_demand
mirror synced and pulled, a pull-through distribution used once, users.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from lazyreg.cli import main
from lazyreg.config import Settings
from lazyreg.db.engine import make_engine
from lazyreg.db.schema import schema_state
from lazyreg.serve import database_state, schema_refusal
from tests.db.build_schema_0007 import OUT as DUMP
from tests.db.build_schema_0007 import SECRET_KEY
from tests.db.test_migration_0006 import _to
from tests.rig import LAZYREG_BIN


def _load_0007(data_dir: Path) -> Path:
    data_dir.mkdir(parents=True)
    path = data_dir / "lazyreg.db"
    with sqlite3.connect(path) as db:
        db.executescript(DUMP.read_text())
    return path


def _rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, ordered, in the columns it has."""
    with sqlite3.connect(path) as db:
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'"
                                           " AND name NOT LIKE 'sqlite_%'")]
        return {t: sorted(db.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr)
                for t in tables if t != "alembic_version"}


def _columns(path: Path, table: str) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[1] for row in db.execute(f'PRAGMA table_info("{table}")')]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("LAZYREG_DATA_DIR", "LAZYREG_DATABASE_URL", "LAZYREG_CONFIG", "LAZYREG_MIGRATE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LAZYREG_SECRET_KEY", SECRET_KEY)


def test_upgrade_from_0007_keeps_every_row(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = _load_0007(tmp_path / "data")
    before = _rows(path)
    old_columns = {t: _columns(path, t) for t in before}
    assert sum(map(len, before.values())) > 50
    assert main(["db", "upgrade", "--data-dir", str(tmp_path / "data")]) == 0
    engine = make_engine(f"sqlite:///{path}")
    state = schema_state(engine)
    engine.dispose()
    assert state.up_to_date
    out = capsys.readouterr().out
    assert out in ("database schema: already at 0007\n",
                   f"database schema: 0007 -> {state.head}\n")
    for table, rows in before.items():
        columns = old_columns[table]
        with sqlite3.connect(path) as db:
            kept = [c for c in columns if c in _columns(path, table)]
            after = sorted(db.execute(
                f'SELECT {", ".join(kept)} FROM "{table}"').fetchall(), key=repr)
        if kept == columns:
            assert after == rows, f"{table}: rows changed"
        else:
            assert len(after) == len(rows), f"{table}: rows lost"


def test_a_server_on_the_upgraded_database_reads_it(tmp_path: Path) -> None:
    """The remote's password, encrypted at 0007, still decrypts; the content still lists."""
    from lazyreg.auth.startup import open_secrets
    from lazyreg.db.engine import Database

    _load_0007(tmp_path / "data")
    settings = Settings(data_dir=tmp_path / "data", secret_key=SECRET_KEY)
    assert main(["db", "upgrade", "--data-dir", str(tmp_path / "data")]) == 0
    db = Database(settings.resolved_database_url)
    secrets = open_secrets(settings)
    with db.read_session() as session:
        [(secret,)] = session.execute(sa.text(
            "SELECT password_secret FROM remotes WHERE name = 'mirror'")).all()
        tags = session.execute(sa.text("SELECT count(*) FROM tags")).scalar_one()
    db.dispose()
    assert secrets.decrypt(secret, "a remote password") == "remote-password-0007"
    assert tags == 3


def test_an_older_schema_is_refused_in_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    engine = make_engine(f"sqlite:///{data / 'lazyreg.db'}", immediate=True)
    _to(engine, "0005")
    engine.dispose()
    settings = Settings(data_dir=data)
    refusal = schema_refusal(database_state(settings))
    assert refusal is not None and "revision 0005" in refusal and "lazyreg db upgrade" in refusal
    # the real command: the server process it becomes refuses, with EX_CONFIG; with
    # --workers 2, the supervisor's schema check (a child process) does
    for extra in ([], ["--workers", "2"]):
        proc = subprocess.run([str(LAZYREG_BIN), "serve", "--data-dir", str(data), "--port",
                               "0", *extra], capture_output=True, text=True, timeout=60,
                              check=False)
        assert proc.returncode == 78, proc.stderr
        assert proc.stderr.count("\n") == 1 and "schema is at revision 0005" in proc.stderr
    assert main(["db", "upgrade", "--data-dir", str(data)]) == 0
    assert schema_refusal(database_state(settings)) is None


def test_a_new_database_is_created_and_a_newer_one_refused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "new")
    state = database_state(settings)
    assert state.empty and schema_refusal(state) is None  # what a first start expects
    assert main(["db", "upgrade", "--data-dir", str(tmp_path / "new")]) == 0
    with sqlite3.connect(tmp_path / "new" / "lazyreg.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '9999'")
    refusal = schema_refusal(database_state(settings))
    assert refusal is not None and "newer lazyreg" in refusal
    assert main(["db", "upgrade", "--data-dir", str(tmp_path / "new")]) == 1  # untouched
