"""Request bounds and the errors outside validation: body size and time, a full
database (507), methods a resource does not answer (405 with Allow)."""

from __future__ import annotations

import asyncio
import errno
import io
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import OperationalError

from lazyreg.api.limits import MAX_BODY_BYTES
from lazyreg.app import is_disk_full
from lazyreg.state import STATE
from tests.api.conftest import API, Client, database, get, post

JSON = {"Content-Type": "application/json"}


async def test_body_over_the_limit_is_413(client: Client) -> None:
    big = b'{"name": "r", "description": "' + b"x" * MAX_BODY_BYTES + b'"}'
    resp = await client.post(f"{API}/repositories/", data=io.BytesIO(big),
                             headers={"Content-Length": str(len(big)), **JSON})
    assert resp.status == 413
    assert str(MAX_BODY_BYTES) in (await resp.json())["detail"]

    async def chunks() -> Any:  # no Content-Length: the limit applies while reading
        for _ in range(3):
            yield b" " * (MAX_BODY_BYTES // 2)
    resp = await client.post(f"{API}/repositories/", data=chunks(), headers=JSON)
    assert resp.status == 413
    assert (await get(client, "repositories/"))["count"] == 0


async def test_body_that_does_not_arrive_in_time_is_408(
        client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client.app[STATE].services.settings, "body_timeout", 0.5)
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(b"POST /api/v1/repositories/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(4096), timeout=10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"did not arrive within 0.5 s" in answer


@pytest.mark.parametrize("raw", [b"[" * 200_000, b'{"a":' * 200_000, b"{" * 100_000])
async def test_deeply_nested_json_is_400(client: Client, raw: bytes) -> None:
    resp = await client.post(f"{API}/remotes/", data=raw, headers=JSON)
    assert resp.status == 400
    assert (await resp.json())["detail"] == "invalid JSON body"


async def test_405_says_which_methods_are_allowed(client: Client) -> None:
    resp = await client.request("TRACE", f"{API}/remotes/")
    assert resp.status == 405
    assert set(resp.headers["Allow"].split(",")) == {"GET", "POST"}
    assert (await resp.json())["detail"]


def _full_sqlite_error(tmp_path: Path) -> OperationalError:
    """A real SQLITE_FULL, as SQLAlchemy raises it."""
    engine = create_engine(f"sqlite:///{tmp_path / 'full.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x)"))
    try:
        with engine.begin() as conn:
            conn.execute(text("PRAGMA max_page_count = 2"))
            conn.execute(text("INSERT INTO t VALUES (randomblob(100000))"))
    except OperationalError as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError("the insert did not fill the database")


def test_disk_full_is_recognised(tmp_path: Path) -> None:
    full = _full_sqlite_error(tmp_path)
    assert isinstance(full.orig, sqlite3.OperationalError)
    assert is_disk_full(full)
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    try:
        raise RuntimeError("wrapped") from OSError(errno.EDQUOT, "Disk quota exceeded")
    except RuntimeError as wrapped:
        assert is_disk_full(wrapped)

    class DiskFull(Exception):  # psycopg's, by its SQLSTATE
        sqlstate = "53100"
    assert is_disk_full(DiskFull())
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(ValueError("no"))


async def test_writes_to_a_full_database_are_507(client: Client) -> None:
    await post(client, "repositories/", {"name": "r"})
    db = database(client)
    # New connections may not grow the database file past its current size.
    db.write_engine.dispose()

    @event.listens_for(db.write_engine, "connect")
    def _cap(dbapi_conn: Any, _record: Any) -> None:
        pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
        dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")

    resp = await client.post(f"{API}/repositories/", json={"name": "big",
                                                             "description": "x" * 4000})
    body = await resp.json()
    assert resp.status == 507, body
    assert "disk" in body["detail"] and "full" in body["detail"]
    event.remove(db.write_engine, "connect", _cap)
    db.write_engine.dispose()
    assert [r["name"] for r in (await get(client, "repositories/"))["results"]] == ["r"]
