"""Which migration a database is at, and which one this lazyreg brings it to.

A server refuses to start on a schema older than its own unless told to
migrate (`lazyreg db upgrade`, `serve --migrate`): an upgrade is the
operator's decision, taken after a backup. A brand-new empty database is
simply created. A schema newer than this lazyreg's is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect

from lazyreg.db.engine import MIGRATIONS

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory


def _scripts() -> ScriptDirectory:
    # Alembic when asked only: it costs a server process 10 MiB (`lazyreg.serve`).
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg)


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # the database's revision; None: no lazyreg schema in it
    head: str  # the newest revision this lazyreg has
    known: bool  # whether this lazyreg has `current` among its migrations
    empty: bool  # no table at all: a new database

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    @property
    def older(self) -> bool:
        return self.current is not None and self.known and not self.up_to_date


def schema_state(engine: Engine) -> SchemaState:
    from alembic.runtime.migration import MigrationContext

    scripts = _scripts()
    head = scripts.get_current_head()
    assert head is not None, "lazyreg ships its migrations"
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
        empty = not inspect(conn).get_table_names()
    known = current is not None and current in {s.revision for s in scripts.walk_revisions()}
    return SchemaState(current, head, known, empty)
