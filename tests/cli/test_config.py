"""`lazyreg config show|check`: the settings in force, secrets redacted; a file checked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lazyreg.cli import main
from lazyreg.config import Settings
from lazyreg.configfile import unknown_variables


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith("LAZYREG_")]:
        monkeypatch.delenv(var)


def test_show_says_where_each_value_comes_from_and_hides_secrets(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    config = tmp_path / "lazyreg.toml"
    config.write_text('port = 6000\nadmin_password = "hunter2hunter2"\n'
                      'database_url = "postgresql://lazyreg:dbpass@127.0.0.1/lazyreg"\n')
    monkeypatch.setenv("LAZYREG_LEASE_TTL", "12")
    monkeypatch.setenv("LAZYREG_SECRET_KEY", "k" * 40)
    assert main(["config", "show", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "port = 6000  # file\n" in out
    assert "lease_ttl = 12.0  # env LAZYREG_LEASE_TTL\n" in out
    assert "send_timeout = 60.0  # default\n" in out
    assert 'admin_password = "<redacted>"  # file\n' in out
    assert 'secret_key = "<redacted>"  # env LAZYREG_SECRET_KEY\n' in out
    for secret in ("hunter2", "dbpass", "kkkk"):
        assert secret not in out
    # What it prints is a config file that `config check` accepts.
    shown = tmp_path / "shown.toml"
    shown.write_text(out.replace('"<redacted>"', '"' + "r" * 40 + '"'))
    assert main(["config", "check", str(shown)]) == 0


@pytest.mark.parametrize(("text", "error"), [
    ("prot = 1\n", "unknown key 'prot' (did you mean 'port'?)"),
    ('auth = "maybe"\n', "auth (from {file}): Input should be 'on' or 'off'"),
    ("port = 70000\n", "port (from {file}): Input should be less than or equal to 65535"),
    ("port = \n", "not valid TOML"),
    ('tls_cert = "/c.pem"\n', "tls_key: tls_cert and tls_key go together"),
])
def test_check_names_the_bad_key_in_one_line(text: str, error: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "lazyreg.toml"
    config.write_text(text)
    assert main(["config", "check", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert error.format(file=config) in err


def test_check_of_a_good_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "lazyreg.toml"
    config.write_text('host = "0.0.0.0"\nauth = "on"\nmax_cache_bytes = 1000000\n')
    assert main(["config", "check", str(config)]) == 0
    assert capsys.readouterr().out == f"{config}: ok\n"
    assert main(["config", "check", str(tmp_path / "missing.toml")]) == 1


def test_every_setting_is_a_known_variable() -> None:
    """The known set comes from the Settings model: a new field is known with no edit."""
    environ = {f"LAZYREG_{name.upper()}": "x" for name in Settings.model_fields}
    environ |= {"LAZYREG_SERVER": "", "LAZYREG_TOKEN": "", "LAZYREG_CONFIG": "",
                "LAZYREG_SHARED": "", "HOME": "/root"}
    assert unknown_variables(environ) == []
    assert unknown_variables({**environ, "LAZYREG_STORAGE_URLL": ""}) == ["LAZYREG_STORAGE_URLL"]
