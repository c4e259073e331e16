"""`lazyreg serve`: flags override LAZYREG_* and the TOML config, which fill the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from lazyreg.cli import main
from lazyreg.config import Settings


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    calls: list[Settings] = []
    monkeypatch.setattr("lazyreg.serve.serve", calls.append)
    for var in ("LAZYREG_HOST", "LAZYREG_PORT", "LAZYREG_DATA_DIR", "LAZYREG_CONFIG",
                "LAZYREG_DATABASE_URL", "LAZYREG_TLS_CERT", "LAZYREG_TLS_KEY"):
        monkeypatch.delenv(var, raising=False)
    return calls


def test_flags_win_and_the_rest_comes_from_env_and_config(
        started: list[Settings], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "lazyreg.toml"
    config.write_text('host = "0.0.0.0"\nport = 6000\nlog_level = "debug"\n')
    monkeypatch.setenv("LAZYREG_CONFIG", str(config))
    monkeypatch.setenv("LAZYREG_PORT", "7000")
    assert main(["serve", "--data-dir", str(tmp_path / "data")]) == 0
    settings = started[0]
    assert (settings.host, settings.port, settings.log_level) == ("0.0.0.0", 7000, "debug")
    assert settings.data_dir == tmp_path / "data"
    assert main(["serve", "--port", "5005", "--host", "127.0.0.2"]) == 0
    assert (started[1].host, started[1].port) == ("127.0.0.2", 5005)


def test_defaults(started: list[Settings]) -> None:
    assert main(["serve"]) == 0
    assert (started[0].host, started[0].port) == ("127.0.0.1", 5000)


def test_bad_settings_are_one_line(started: list[Settings],
                                   capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["serve", "--port", "70000"]) == 1
    assert capsys.readouterr().err == (
        "error: port: Input should be less than or equal to 65535\n")
    assert main(["serve", "--tls-cert", str(tmp_path / "cert.pem")]) == 1
    assert capsys.readouterr().err == "error: --tls-cert and --tls-key go together\n"
    assert started == []
