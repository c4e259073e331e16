"""Schema 0009 (revocable tokens): users keep their rows and start at generation 0,
`api_tokens` cascades with its user, and the downgrade goes back to 0007 whole."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from lazyreg.db.engine import make_engine, migrate
from tests.db.test_migration_0006 import _to


def test_upgrade_and_downgrade(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}", immediate=True)
    _to(engine, "0007")
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO users (username, password_hash, role, created)"
                             " VALUES ('vera', 'h', 'viewer', '2026-01-01')"))
    migrate(engine)
    with engine.begin() as conn:
        user = conn.execute(sa.text("SELECT * FROM users")).mappings().one()
        assert user["token_generation"] == 0
        conn.execute(sa.text("INSERT INTO api_tokens (id, user_id, kind, created, expires)"
                             " VALUES ('t1', :id, 'api', '2026-01-01', '2026-01-02')"),
                     {"id": user["id"]})
        conn.execute(sa.text("DELETE FROM users"))
        assert conn.execute(sa.text("SELECT count(*) FROM api_tokens")).scalar_one() == 0
    _to(engine, "0007", down=True)
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        columns = {c["name"] for c in sa.inspect(conn).get_columns("users")}
    assert "api_tokens" not in tables and "token_generation" not in columns
    engine.dispose()
