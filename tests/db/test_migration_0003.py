"""Schema 0003 encrypts the remote secrets an older database holds in plain text."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from lazyreg.auth.secrets import load_secret_box
from lazyreg.db.engine import MIGRATIONS, make_engine, migrate


def _upgrade(engine: sa.Engine, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def test_plain_text_secrets_are_encrypted_and_gone(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    engine = make_engine(f"sqlite:///{db}", immediate=True)
    _upgrade(engine, "0002")
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO remotes (name, url, upstream_name, policy, password, tls_verify,"
            " proxy_url, download_concurrency, include_referrers, max_tags, created)"
            " VALUES ('r', 'https://reg.example', 'a', 'on_demand', 'plain-pass-42', 1,"
            " 'http://puser:proxy-pass-42@proxy:3128', 8, 0, 100000, '2026-01-01')"))
    with pytest.raises(RuntimeError, match="needs the secret key"):
        migrate(engine)
    box = load_secret_box(None, tmp_path / "secret.key")
    migrate(engine, box)
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM remotes")).mappings().one()
    engine.dispose()
    assert "password" not in row
    assert box.decrypt(row["password_secret"], "x") == "plain-pass-42"
    assert box.decrypt(row["proxy_secret"], "x") == "puser:proxy-pass-42"
    assert row["proxy_url"] == "http://proxy:3128"
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("old.db*"))
    assert b"plain-pass-42" not in stored and b"proxy-pass-42" not in stored
