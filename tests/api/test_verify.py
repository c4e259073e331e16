"""Issue 20, finding 6: hashing all of storage is for admins, a task, one at a time."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from lazyreg.app import create_app
from lazyreg.config import Settings
from lazyreg.db.artifacts import NewArtifact, record_artifacts
from lazyreg.state import STATE
from tests.api.conftest import API, Client
from tests.sqlite import seeded

PASSWORD = "admin-secret-1"
SIZE = 48 * 1024 * 1024  # bytes stored: hashing them outlasts the requests below


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


ADMIN = basic("admin", PASSWORD)


@pytest.fixture
async def secure(tmp_path: Path, template: Path) -> AsyncIterator[Client]:
    settings = Settings(data_dir=seeded(tmp_path, template), auth="on", admin_password=PASSWORD)
    async with TestClient(TestServer(create_app(settings))) as client:
        services = client.app[STATE].services
        stored = []
        for i in range(2):
            data = bytes([i]) * (SIZE // 2)
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            stored.append(NewArtifact(digest, len(data), "layer",
                                      await services.store.put(digest, data)))
        await services.db.write(lambda s: record_artifacts(s, stored))
        resp = await client.post(f"{API}/users/", headers=ADMIN, json={
            "username": "vera", "password": "vera-password", "role": "viewer"})
        assert resp.status == 201
        yield client


async def test_a_viewer_cannot_verify(secure: Client) -> None:
    vera = basic("vera", "vera-password")
    resp = await secure.post(f"{API}/check/verify/", headers=vera)
    assert resp.status == 403
    # The old way in is closed to everyone: GET must not hash.
    for headers in (vera, ADMIN):
        resp = await secure.get(f"{API}/check/?verify=true", headers=headers)
        assert resp.status == 400
        answer = await resp.json()
        assert answer["field"] == "verify" and "POST /api/v1/check/verify/" in answer["detail"]
    resp = await secure.get(f"{API}/tasks/", headers=ADMIN)
    assert (await resp.json())["count"] == 0
    # The check without hashing stays a read.
    resp = await secure.get(f"{API}/check/", headers=vera)
    assert resp.status == 200 and (await resp.json())["verified"] is False


async def test_concurrent_verifies_run_once(secure: Client) -> None:
    resp = await secure.post(f"{API}/tokens/", headers=ADMIN)
    token = {"Authorization": f"Bearer {(await resp.json())['token']}"}  # no argon2 queue

    async def ask() -> tuple[int, dict[str, object]]:
        resp = await secure.post(f"{API}/check/verify/", headers=token)
        return resp.status, await resp.json()
    answers = await asyncio.gather(*(ask() for _ in range(8)))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] * 7 + [202], answers
    assert len({task["id"] for _, task in answers}) == 1
    task_id = answers[0][1]["id"]
    await secure.app[STATE].tasks.wait(str(task_id))
    resp = await secure.get(f"{API}/tasks/{task_id}/", headers=ADMIN)
    task = await resp.json()
    assert (task["kind"], task["state"], task["warnings"]) == ("verify", "completed", [])
    assert task["progress"]["files"] == {"done": 2, "total": 2}
    assert "no problem" in task["progress"]["message"]
    resp = await secure.get(f"{API}/tasks/?limit=100", headers=ADMIN)
    assert (await resp.json())["count"] == 1
    # Once it ended, the next one runs.
    resp = await secure.post(f"{API}/check/verify/", headers=ADMIN)
    assert resp.status == 202 and (await resp.json())["id"] != task_id
