"""Engine and session factory; SQLite in WAL mode so that several processes can share it.

`Database.read` and `write` turn a database that cannot be reached (refused or
dropped connections, a server shutting down, a pool that stays exhausted, a
SQLite file locked past its busy timeout) into `DatabaseUnavailable`, which
every area renders as a 503 with `Retry-After`; any other database error (a
bug, a constraint) stays what it is.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from lazyreg.errors import DatabaseUnavailable

T = TypeVar("T")
MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK = 0x6C617A79  # "lazy": the advisory lock key of schema migrations
CONNECT_TIMEOUT = 5  # seconds: a PostgreSQL host that does not answer is unreachable by then
POOL_TIMEOUT = 10  # seconds a request waits for a free connection before a 503

# SQLite's primary result codes that mean "not now" rather than "wrong".
_SQLITE_UNREACHABLE = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN,
                       sqlite3.SQLITE_IOERR}
# PostgreSQL SQLSTATEs of a server that is going away or refuses connections (class 08:
# connection exceptions).
_PG_UNREACHABLE = {"57P01", "57P02", "57P03", "53300"}


def unreachable(exc: BaseException) -> bool:
    """Whether a database error means the database cannot be reached (now), not a bug."""
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection came free
        return True
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        return isinstance(exc, sa_exc.OperationalError) and code & 0xFF in _SQLITE_UNREACHABLE
    if not isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)):
        return False
    sqlstate = getattr(orig, "sqlstate", None)
    # No SQLSTATE: the client library failed (a refused or dropped connection).
    return sqlstate is None or sqlstate.startswith("08") or sqlstate in _PG_UNREACHABLE


def as_unavailable(exc: BaseException) -> DatabaseUnavailable | None:
    """The DatabaseUnavailable that `exc` means, if it means one."""
    if not unreachable(exc):
        return None
    # The driver's first line only: the rest may name hosts and users (it goes to the log).
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = detail[0][:200] if detail else type(exc).__name__
    return DatabaseUnavailable(f"the database is unreachable ({first}); retry shortly")


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
        return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True,
                             pool_timeout=POOL_TIMEOUT,
                             connect_args={"connect_timeout": CONNECT_TIMEOUT})
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


REVISION = re.compile(r"^(down_)?revision\s*=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)


def head_revision() -> str | None:
    """The newest migration's revision, read from the scripts' text (the one no other
    script revises); None when that is not one revision."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        for down, value in REVISION.findall(script.read_text()):
            (revised if down else revisions).add(value)
    heads = revisions - revised
    return next(iter(heads)) if len(heads) == 1 else None


def is_current(engine: Engine) -> bool:
    """Whether the database is at the newest migration already."""
    head = head_revision()
    with engine.connect() as conn:
        if head is None or not inspect(conn).has_table("alembic_version"):
            return False
        return [r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))
                ] == [head]


def migrate(engine: Engine, secrets: Any = None) -> None:
    """Bring the schema to the newest migration.

    `secrets` (a `lazyreg.auth.secrets.SecretBox`) encrypts what a migration
    finds stored in plain text. Alembic is loaded only when there is something to
    do: it costs every server process 10 MiB of memory for the rest of its life.
    """
    if is_current(engine):
        return
    from alembic import command
    from alembic.config import Config

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


def upsert(session: Session) -> Callable[..., Any]:
    """The INSERT of the session's database that has ON CONFLICT (PostgreSQL's or SQLite's).

    Each dialect's module is loaded at its first use: PostgreSQL's costs a process
    3 MiB that a server on SQLite never needs.
    """
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


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
        return await self._run(run)

    async def read(self, fn: Callable[[Session], T]) -> T:
        def run() -> T:
            with self.read_session() as session:
                return fn(session)
        return await self._run(run)

    @staticmethod
    async def _run(run: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(run)
        except (sa_exc.DBAPIError, sa_exc.TimeoutError) as exc:
            unavailable = as_unavailable(exc)
            if unavailable is None:
                raise
            raise unavailable from exc

    def dispose(self) -> None:
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()
