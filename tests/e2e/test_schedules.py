"""Scheduled syncs (issue 24): two server processes on PostgreSQL run one sync per tick,
never two at once, and a run still going makes the next tick skip with a log line."""

from __future__ import annotations

import itertools
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.rig import FaultProxy, Upstream, start_lazyreg

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

INTERVAL = 2
SLOW_MS = 3000  # each run's tag listing: longer than the interval


def _when(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_two_servers_run_one_scheduled_sync_per_tick(postgres_url: str, upstream: Upstream,
                                                     tmp_path: Path) -> None:
    faults = FaultProxy(upstream.url, tmp_path / "faults.log")
    first = start_lazyreg(tmp_path / "data", database_url=postgres_url)
    second = start_lazyreg(tmp_path / "data", database_url=postgres_url)
    try:
        first.ok("POST", "remotes/", {"name": "up", "url": faults.url,
                                      "upstream_name": "fixtures/small"})
        first.ok("POST", "repositories/", {"name": "app"})
        faults.configure(match="^GET /v2/.+/tags/list", delay_ms=SLOW_MS, reset=True)
        status, schedule = first.api("PUT", "repositories/app/schedule/",
                                     {"remote": "up", "sync_interval": INTERVAL})
        assert status == 200, schedule
        assert second.ok("GET", "repositories/app/schedule/")["sync_interval"] == INTERVAL
        started = time.time()
        time.sleep(11)
        assert first.api("DELETE", "repositories/app/schedule/")[0] == 204
        stopped = time.time()

        def scheduled() -> list[dict]:
            tasks = first.ok("GET", "tasks/?limit=1000")["results"]
            return [t for t in tasks if t["params"].get("scheduled")]
        deadline = time.monotonic() + 30
        while any(t["state"] in ("waiting", "running") for t in scheduled()):
            assert time.monotonic() < deadline, scheduled()
            time.sleep(0.2)
        runs = sorted(scheduled(), key=lambda t: t["started"])
        assert all(t["state"] == "completed" for t in runs), runs
        # Ticks at 2, 4, 6, 8, 10 s; each run takes over 3 s, so about every other
        # tick is skipped: 2 to 4 runs, never 2 per tick (one per process).
        ticks = int((stopped - started) // INTERVAL)
        assert 2 <= len(runs) <= (ticks + 1) // 2 + 1, [(t["started"], t["finished"])
                                                          for t in runs]
        for before, after in itertools.pairwise(runs):
            assert _when(before["finished"]) <= _when(after["started"]), (before, after)
        logs = first.logfile.read_text() + second.logfile.read_text()
        assert "is still going" in logs
        assert first.ok("GET", "repositories/app/")["latest_version"] == 1
    finally:
        first.stop()
        second.stop()
        faults.stop()
