"""The change feed between processes on one database, and what counts as unreachable."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest
from sqlalchemy import exc as sa_exc

from lazyreg.db import changes
from lazyreg.db.changes import EVERYTHING, ChangeFeed
from lazyreg.db.engine import Database, as_unavailable, unreachable
from lazyreg.worker import WorkerId


def feed(db: Database, name: str, clock: list[float] | None = None) -> tuple[ChangeFeed,
                                                                              list[str]]:
    got: list[str] = []
    f = ChangeFeed(db, WorkerId(f"host-{name}", 1), grace=40.0,
                   clock=(lambda: clock[0]) if clock else time.monotonic)
    f.subscribe(got.append)
    return f, got


async def test_a_change_published_on_one_process_reaches_the_other(db: Database) -> None:
    a, got_a = feed(db, "a")
    b, got_b = feed(db, "b")
    await a.look()
    await b.look()
    generation = await a.publish("targets")
    assert got_a == ["targets"]  # applied where it was made at once
    assert got_b == []
    await b.look()
    assert got_b == ["targets"]
    assert b.seen == generation
    await b.look()
    assert got_b == ["targets"]  # once
    await a.look()
    assert got_a == ["targets"]  # not again where it was made: what was read since stays


async def test_a_delete_waits_until_every_serving_process_applied_it(db: Database) -> None:
    a, _ = feed(db, "a")
    b, got_b = feed(db, "b")
    await a.look()
    await b.look()
    generation = await a.publish("targets")
    waiting = asyncio.create_task(a.wait_applied(generation))
    await asyncio.sleep(0.2)
    assert not waiting.done()  # b has not applied it
    await b.look()
    assert await asyncio.wait_for(waiting, 5) == []
    assert got_b == ["targets"]


async def test_a_process_silent_beyond_its_grace_is_not_waited_for(db: Database) -> None:
    a, _ = feed(db, "a")
    await a.look()
    await db.write(lambda s: changes.heartbeat(s, "host-old-7", 0, time.time() - 100))
    generation = await a.publish("targets")
    started = time.monotonic()
    assert await a.wait_applied(generation) == []
    assert time.monotonic() - started < 1


async def test_memory_is_used_only_within_the_grace_of_the_last_heartbeat(db: Database) -> None:
    clock = [1000.0]
    b, _ = feed(db, "b", clock)
    assert not b.serving  # never looked
    await b.look()
    assert b.serving
    clock[0] += 39.0
    assert b.serving
    clock[0] += 2.0
    assert not b.serving
    await b.look()  # heard from the database again: a heartbeat, serving again
    assert b.serving


async def test_a_process_left_behind_by_pruning_drops_everything(db: Database) -> None:
    a, _ = feed(db, "a")
    b, got_b = feed(db, "b")
    await b.look()
    for n in range(changes.KEEP + 3):
        await db.write(lambda s, n=n: changes.publish(s, [f"k{n}"]))
    await b.look()
    assert got_b == [EVERYTHING]
    assert b.seen == changes.KEEP + 3
    del a


def _wrapped(orig: BaseException, cls: type[sa_exc.DBAPIError] = sa_exc.OperationalError
             ) -> sa_exc.DBAPIError:
    return cls("SELECT 1", {}, orig)  # type: ignore[arg-type]


class _PgError(Exception):
    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(("orig", "expected"), [
    (_PgError("connection refused", None), True),
    (_PgError("terminating connection due to administrator command", "57P01"), True),
    (_PgError("the database system is starting up", "57P03"), True),
    (_PgError("connection failure", "08006"), True),
    (_PgError("relation does not exist", "42P01"), False),
    (_PgError("could not extend file: No space left", "53100"), False),
])
def test_postgres_errors_that_mean_unreachable(orig: BaseException, expected: bool) -> None:
    assert unreachable(_wrapped(orig)) is expected


def test_sqlite_errors_that_mean_unreachable() -> None:
    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorcode = sqlite3.SQLITE_BUSY  # type: ignore[attr-defined]
    assert unreachable(_wrapped(locked))
    missing = sqlite3.OperationalError("no such table: x")
    missing.sqlite_errorcode = sqlite3.SQLITE_ERROR  # type: ignore[attr-defined]
    assert not unreachable(_wrapped(missing))
    integrity = sqlite3.IntegrityError("UNIQUE constraint failed")
    integrity.sqlite_errorcode = sqlite3.SQLITE_CONSTRAINT  # type: ignore[attr-defined]
    assert not unreachable(_wrapped(integrity, sa_exc.IntegrityError))
    assert unreachable(sa_exc.TimeoutError("QueuePool limit"))
    found = as_unavailable(_wrapped(_PgError("connection refused\nhost=10.0.0.1", None)))
    assert found is not None and found.status == 503
    assert "10.0.0.1" not in found.message and found.headers["Retry-After"]
