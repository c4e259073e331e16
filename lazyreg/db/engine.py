"""Engine and session factory; SQLite in WAL mode so that several processes can share it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")
MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK = 0x6C617A79  # "lazy": the advisory lock key of schema migrations


def _normalise_url(url: str) -> str:
    # Users write postgresql://; SQLAlchemy's default driver for that is psycopg2.
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url[len("postgres://"):]
    return url


def make_engine(url: str, *, immediate: bool = False) -> Engine:
    """An engine; for SQLite, `immediate` makes every transaction take the write lock first."""
    url = _normalise_url(url)
    if not url.startswith("sqlite"):
        return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                           pool_size=8, max_overflow=8)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    # A deferred transaction that reads and then writes cannot wait for the lock
    # (SQLITE_BUSY at once in WAL mode), so writers take it up front; readers
    # stay deferred and never block.
    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine


def migrate(engine: Engine, secrets: Any = None) -> None:
    """Bring the schema to the newest migration.

    `secrets` (a `lazyreg.auth.secrets.SecretBox`) encrypts what a migration
    finds stored in plain text.
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Servers (or `db upgrade` init containers) starting together take turns; the
            # later ones find the schema at head. SQLite's BEGIN IMMEDIATE does the same.
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        cfg.attributes["connection"] = conn
        cfg.attributes["secrets"] = secrets
        command.upgrade(cfg, "head")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One short transaction: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session


class Database:
    """The engines of one database: short write transactions, non-blocking reads.

    SQLAlchemy sessions are synchronous; the server calls them in worker threads
    through `read` and `write`, so the event loop never waits on the database.
    """

    def __init__(self, url: str) -> None:
        self.url = _normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self.write_engine = make_engine(url, immediate=True)
        self.read_engine = make_engine(url) if self.is_sqlite else self.write_engine
        self._writer = make_sessionmaker(self.write_engine)
        self._reader = make_sessionmaker(self.read_engine)

    def migrate(self, secrets: Any = None) -> None:
        migrate(self.write_engine, secrets)

    def write_session(self) -> AbstractContextManager[Session]:
        return transaction(self._writer)

    def read_session(self) -> AbstractContextManager[Session]:
        return transaction(self._reader)

    async def write(self, fn: Callable[[Session], T]) -> T:
        def run() -> T:
            with self.write_session() as session:
                return fn(session)
        return await asyncio.to_thread(run)

    async def read(self, fn: Callable[[Session], T]) -> T:
        def run() -> T:
            with self.read_session() as session:
                return fn(session)
        return await asyncio.to_thread(run)

    def dispose(self) -> None:
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()
