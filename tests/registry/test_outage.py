"""A database that cannot be reached, in process: 503 in each area's shape, answers from memory
within the change feed's grace, and none past it (issue 20, finding 9)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.orm import Session

from lazyreg.errors import DatabaseUnavailable
from lazyreg.state import STATE
from tests.registry.conftest import (
    Client,
    add_manifest,
    add_repository,
    error_code,
    fetch,
    image,
    set_version,
    write,
)


def _down(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    db = client.app[STATE].services.db

    async def unreachable(fn: Callable[[Session], Any]) -> Any:
        raise DatabaseUnavailable("the database is unreachable (connection refused)")
    monkeypatch.setattr(db, "read", unreachable)
    monkeypatch.setattr(db, "write", unreachable)


async def test_an_unreachable_database_is_a_503_in_each_area_and_memory_still_serves(
        client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    def fill(session: Session) -> None:
        add_repository(session, "app")
        set_version(session, "app", {"v1": add_manifest(session, image("app"))})
    await write(client, fill)
    status, _, warm = await fetch(client, "/v2/app/manifests/v1")
    assert status == 200

    _down(client, monkeypatch)
    lookups = client.app[STATE].lookups
    later = time.monotonic() + 10 * lookups.ttl
    monkeypatch.setattr(lookups, "_clock", lambda: later)  # every fresh answer expired
    status, headers, body = await fetch(client, "/v2/app/manifests/v1")
    assert (status, body) == (200, warm)  # from memory, though its answer's ttl ran out
    status, headers, body = await fetch(client, "/v2/other/manifests/v1")
    assert status == 503 and error_code(body) == "UNAVAILABLE"
    assert headers["Retry-After"] == "5"
    status, headers, body = await fetch(client, "/api/v1/repositories/")
    assert status == 503 and headers["Retry-After"] == "5"
    assert json.loads(body)["detail"].startswith("the database is unreachable")
    status, headers, body = await fetch(client, "/")
    assert status == 503 and headers["Content-Type"].startswith("text/html")
    assert b"the database is unreachable" in body

    # Past the grace, memory is not trusted any more: another process may have deleted it.
    feed = client.app[STATE].changes
    monkeypatch.setattr(feed, "_confirmed", -1e9)
    assert not feed.serving
    status, _, body = await fetch(client, "/v2/app/manifests/v1")
    assert status == 503 and error_code(body) == "UNAVAILABLE"
