"""`lazyreg serve`: flags override LAZYREG_* and the TOML config, which fill the rest."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from lazyreg.cli import main
from lazyreg.cli.serve import SUPERVISOR
from lazyreg.config import Settings
from lazyreg.supervisor import SERVER


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """The settings each `lazyreg serve` hands to the server process it becomes (exec), as
    that process reads them back from its environment."""
    calls: list[Settings] = []

    def execve(path: str, argv: Sequence[str], env: Mapping[str, str]) -> None:
        assert path == sys.executable and list(argv[1:]) == ["-c", SERVER, "serve"], argv
        with pytest.MonkeyPatch.context() as server_env:
            for name in os.environ:
                if name.startswith("LAZYREG_"):
                    server_env.delenv(name)
            for name, value in env.items():
                server_env.setenv(name, value)
            calls.append(Settings())

    monkeypatch.setattr("lazyreg.cli.serve.os.execve", execve)
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
    assert main(["serve", "--port", "70000"]) == 78  # EX_CONFIG: not restarted by systemd
    assert capsys.readouterr().err == (
        "error: port (from flag --port): Input should be less than or equal to 65535\n")
    assert main(["serve", "--tls-cert", str(tmp_path / "cert.pem")]) == 78
    assert capsys.readouterr().err == (
        "error: tls_key: tls_cert and tls_key go together (HTTPS needs both)\n")
    assert started == []


def test_one_setting_from_a_file_a_variable_and_a_flag(
        started: list[Settings], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The flag wins, then the variable, then the file (given by --config)."""
    config = tmp_path / "lazyreg.toml"
    config.write_text("port = 6000\nlease_ttl = 12.5\n")
    assert main(["serve", "--config", str(config)]) == 0
    assert (started[-1].port, started[-1].lease_ttl) == (6000, 12.5)
    monkeypatch.setenv("LAZYREG_PORT", "7000")
    assert main(["serve", "--config", str(config)]) == 0
    assert (started[-1].port, started[-1].lease_ttl) == (7000, 12.5)
    assert main(["serve", "--config", str(config), "--port", "8000"]) == 0
    assert (started[-1].port, started[-1].lease_ttl) == (8000, 12.5)


def test_a_bad_file_is_one_line_naming_the_key(
        started: list[Settings], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "lazyreg.toml"
    config.write_text("prot = 6000\n")
    assert main(["serve", "--config", str(config)]) == 78
    assert capsys.readouterr().err == (
        f"error: {config}: unknown key 'prot' (did you mean 'port'?)\n")
    config.write_text('lease_ttl = "soon"\n')
    assert main(["serve", "--config", str(config)]) == 78
    err = capsys.readouterr().err
    assert err.startswith("error: lease_ttl (from file): ") and err.count("\n") == 1
    assert started == []


def test_an_unknown_variable_is_named_at_start(monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture,
                                               tmp_path: Path) -> None:
    """The server process logs a line (JSON with --log-format json) that names it; known
    variables are not named."""
    from lazyreg import serve

    monkeypatch.setattr(serve.web, "run_app", lambda app, sock, **k: sock.close())
    monkeypatch.setattr(serve.signal, "signal", lambda *a: None)  # keep pytest's SIGTERM
    monkeypatch.setattr(serve.logs, "configure", lambda *a, **k: None)
    monkeypatch.setenv("LAZYREG_STORAGE_URLL", "s3://bucket")  # a typo
    monkeypatch.setenv("LAZYREG_SERVER", "http://127.0.0.1:1")  # the CLI's, not a setting
    monkeypatch.setenv("LAZYREG_LEASE_TTL", "9")  # a setting
    monkeypatch.setenv("LAZYREG_PORT", "0")
    monkeypatch.setenv("LAZYREG_DATA_DIR", str(tmp_path / "data"))
    with caplog.at_level("WARNING", logger="lazyreg.serve"):
        serve.main()  # the server process `lazyreg serve` becomes
    named = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("LAZYREG_STORAGE_URLL is not a lazyreg setting") for m in named)
    assert not any("LAZYREG_SERVER" in m or "LAZYREG_LEASE_TTL" in m for m in named)


@pytest.mark.parametrize("code", [SERVER, SUPERVISOR])
def test_a_server_process_with_a_bad_variable_says_so_in_one_line(code: str,
                                                                  tmp_path: Path) -> None:
    """What `lazyreg serve` execs (one server, or the supervisor of N) reads its settings
    from LAZYREG_* variables: one that does not validate is one line, exit 78."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAZYREG_")}
    env |= {"LAZYREG_PORT": "lots", "LAZYREG_DATA_DIR": str(tmp_path / "data"),
            "LAZYREG_WORKERS": "2"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 78, proc.stderr
    assert proc.stderr.startswith("error: port (from env LAZYREG_PORT): ")
    assert proc.stderr.count("\n") == 1
