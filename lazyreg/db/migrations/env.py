"""Alembic environment: runs on the connection lazyreg hands it (see engine.migrate)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from lazyreg.db.models import Base

config = context.config
connection = config.attributes.get("connection")

if connection is None:
    # `alembic revision --autogenerate` from a developer's shell.
    url = config.get_main_option("sqlalchemy.url") or "sqlite:///:memory:"
    with create_engine(url).connect() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
