"""`--workers`: how many, and the settings a worker is started with."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from lazyreg.config import Settings
from lazyreg.configfile import as_environment
from lazyreg.supervisor import worker_count


def test_worker_count() -> None:
    assert worker_count("3") == 3
    assert worker_count("auto") == len(os.sched_getaffinity(0))


def test_a_worker_reads_the_settings_its_supervisor_was_given(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    given = Settings(port=0, data_dir=tmp_path, workers="2", auth="on", lease_ttl=7.5,
                     request_metrics=False, secret_key=SecretStr("k" * 40),
                     max_cache_bytes=10_000, transfer_paths=[tmp_path / "a", tmp_path / "b"])
    for name, value in as_environment(given).items():
        monkeypatch.setenv(name, value)
    assert Settings() == given


@pytest.mark.parametrize("workers", ["0", "-1", "many", "1000"])
def test_bad_worker_counts_are_refused(workers: str) -> None:
    with pytest.raises(ValueError, match="workers"):
        Settings(workers=workers)
