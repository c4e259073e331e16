"""Schema 0006 (pull-through) adds columns and tables only: a database at 0005 keeps
every row."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from lazyreg.db.engine import MIGRATIONS, make_engine, migrate


def _to(engine: sa.Engine, revision: str, down: bool = False) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)


def _counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in ("remotes", "repositories", "repository_versions", "distributions")}


def test_upgrade_keeps_every_row_and_sets_defaults(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}", immediate=True)
    _to(engine, "0005")
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO remotes (name, url, upstream_name, policy, tls_verify,"
            " download_concurrency, include_referrers, max_tags, allow_private_redirects,"
            " created) VALUES ('r', 'https://x', 'a', 'on_demand', 1, 8, 0, 9, 0, '2026-01-01')"))
        conn.execute(sa.text("INSERT INTO repositories (name, description, latest_version, uid,"
                             " created) VALUES ('repo', '', 0, 'u1', '2026-01-01')"))
        conn.execute(sa.text("INSERT INTO repository_versions (repository_id, number, created,"
                             " content_counts, added_counts, removed_counts)"
                             " VALUES (1, 0, '2026-01-01', '{}', '{}', '{}')"))
        conn.execute(sa.text("INSERT INTO distributions (name, base_path, repository_id,"
                             " private, anonymous_pull_through, created)"
                             " VALUES ('d', 'd', 1, 0, 1, '2026-01-01')"))
    before = _counts(engine)
    migrate(engine)
    assert _counts(engine) == before
    with engine.connect() as conn:
        remote = conn.execute(sa.text("SELECT * FROM remotes")).mappings().one()
        dist = conn.execute(sa.text("SELECT * FROM distributions")).mappings().one()
        repo = conn.execute(sa.text("SELECT * FROM repositories")).mappings().one()
    assert (remote["tag_ttl"], remote["negative_ttl"], remote["include_names"]) == (300, 30, None)
    assert (dist["pull_through"], dist["remote_id"], dist["repository_id"]) == (0, None, 1)
    assert repo["retain_versions"] is None
    _to(engine, "0005", down=True)
    assert _counts(engine) == before
    engine.dispose()
