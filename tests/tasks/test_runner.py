"""The task runner reports each task's end, and its log line carries the starting request's id."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from lazyreg.auth.secrets import SecretBox
from lazyreg.config import Settings
from lazyreg.db.engine import Database
from lazyreg.observe.logs import REQUEST_ID, RequestIdFilter
from lazyreg.services import Services
from lazyreg.storage.filesystem import FilesystemStore
from lazyreg.tasks.runner import TaskContext, TaskRunner
from lazyreg.upstream.pool import UpstreamPool


class Recorder:
    def __init__(self) -> None:
        self.ended: list[tuple[str, str, float]] = []

    def task_finished(self, kind: str, state: str, seconds: float) -> None:
        self.ended.append((kind, state, seconds))


@pytest.fixture
async def runner(tmp_path: Path) -> AsyncIterator[tuple[TaskRunner, Recorder]]:
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate()
    recorder = Recorder()
    async with aiohttp.ClientSession() as session:
        services = Services(Settings(data_dir=tmp_path), db, FilesystemStore(tmp_path / "s"),
                            UpstreamPool(session), SecretBox.from_master(b"k" * 32, "test"))
        runner = TaskRunner(services, observer=recorder)
        yield runner, recorder
        await runner.shutdown()
    db.dispose()


async def test_each_end_is_reported_and_logged_with_the_request_id(
        runner: tuple[TaskRunner, Recorder], caplog: pytest.LogCaptureFixture) -> None:
    tasks, seen = runner
    caplog.set_level(logging.INFO, "lazyreg.tasks.runner")
    caplog.handler.addFilter(RequestIdFilter())
    inside: list[str | None] = []

    async def works(ctx: TaskContext) -> list[str]:
        inside.append(REQUEST_ID.get())
        return []

    async def breaks(ctx: TaskContext) -> list[str]:
        raise RuntimeError("upstream on fire")

    token = REQUEST_ID.set("req-42")
    try:
        ok = await tasks.submit("sync", {}, works)
        bad = await tasks.submit("sync", {}, breaks, lock_key="repository:x")
    finally:
        REQUEST_ID.reset(token)
    await tasks.wait(ok.id)
    await tasks.wait(bad.id)

    assert inside == ["req-42"]
    assert sorted((kind, state) for kind, state, _ in seen.ended) == [
        ("sync", "completed"), ("sync", "failed")]
    assert all(seconds >= 0 for _, _, seconds in seen.ended)
    lines = {r.getMessage(): r for r in caplog.records if r.name == "lazyreg.tasks.runner"}
    done = next(r for m, r in lines.items() if m.startswith(f"task {ok.id} sync completed in"))
    failed = next(r for m, r in lines.items() if m.startswith(f"task {bad.id} sync failed in"))
    assert done.request_id == failed.request_id == "req-42"  # type: ignore[attr-defined]
    assert failed.levelno == logging.WARNING
    assert failed.getMessage().endswith("RuntimeError: upstream on fire")
