"""/healthz answers while the process runs; /readyz says whether database and storage answer."""

from __future__ import annotations

import asyncio

from lazyreg.state import STATE
from tests.observe.conftest import Client


async def test_healthy_and_ready(client: Client) -> None:
    resp = await client.get("/healthz")
    assert (resp.status, await resp.json()) == (200, {"status": "ok"})
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ready",
                                 "checks": {"database": "ok", "storage": "ok"}}


async def test_storage_gone_is_not_ready_until_it_is_back(client: Client) -> None:
    storage = client.app[STATE].services.settings.storage_dir
    moved = storage.with_name("moved-away")
    storage.rename(moved)
    try:
        answers = await asyncio.gather(*(client.get("/readyz") for _ in range(20)))
        for resp in answers:
            assert resp.status == 503
            body = await resp.json()
            assert body["status"] == "not ready"
            assert body["checks"]["database"] == "ok"
            assert body["checks"]["storage"] == "unreachable (OSError)"
            assert str(storage) not in str(body)  # the why goes to the log, not to clients
        assert (await client.get("/healthz")).status == 200
    finally:
        moved.rename(storage)
    assert (await client.get("/readyz")).status == 200


async def test_storage_that_is_no_directory_is_not_ready(client: Client) -> None:
    storage = client.app[STATE].services.settings.storage_dir
    kept = storage.with_name("kept")
    storage.rename(kept)
    storage.write_text("a file where the storage directory should be")
    try:
        resp = await client.get("/readyz")
        assert resp.status == 503
        assert (await resp.json())["checks"]["storage"] == "unreachable (OSError)"
    finally:
        storage.unlink()
        kept.rename(storage)
    assert (await client.get("/readyz")).status == 200
