"""`lazyreg login`, LAZYREG_TOKEN and the CLI against a server with --auth on."""

from __future__ import annotations

import io
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from lazyreg.config import Settings
from tests.cli.conftest import Runner, Servers

ADMIN_PASSWORD = "cli-admin-password"


@pytest.fixture
def secure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
           capsys: pytest.CaptureFixture[str]) -> Iterator[Runner]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("LAZYREG_TOKEN", raising=False)
    servers = Servers(tmp_path / "data")
    servers.settings = Settings(data_dir=tmp_path / "data", auth="on",
                                admin_password=ADMIN_PASSWORD, upstream_retries=0)
    with servers:
        yield Runner(servers.url, capsys)


def login(cli: Runner, monkeypatch: pytest.MonkeyPatch, user: str, password: str,
          *args: str) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    return cli("login", "--username", user, "--password-stdin", *args).code


def test_login_then_commands_and_json_output(secure: Runner, monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    refused = secure("remote", "list")
    assert refused.code == 1 and "lazyreg login" in refused.err
    assert login(secure, monkeypatch, "admin", "wrong") == 1
    assert login(secure, monkeypatch, "admin", ADMIN_PASSWORD) == 0
    stored = tmp_path / "config" / "lazyreg" / "tokens.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert ADMIN_PASSWORD not in stored.read_text()
    assert secure("repository", "create", "r1").code == 0
    page = secure("-o", "json", "repository", "list")
    assert page.code == 0 and [r["name"] for r in page.json()["results"]] == ["r1"]

    monkeypatch.setattr("sys.stdin", io.StringIO("viewer-password\n"))
    assert secure("user", "create", "vera", "--role", "viewer", "--password-stdin").code == 0
    users = secure("-o", "json", "user", "list").json()
    assert [(u["username"], u["role"]) for u in users["results"]] == [
        ("admin", "admin"), ("vera", "viewer")]

    # LAZYREG_TOKEN overrides the stored token: here, a viewer's, which reads but not writes.
    assert login(secure, monkeypatch, "vera", "viewer-password") == 0
    viewer_token = json.loads(stored.read_text())[secure.server.rstrip("/")]["token"]
    assert login(secure, monkeypatch, "admin", ADMIN_PASSWORD) == 0
    monkeypatch.setenv("LAZYREG_TOKEN", viewer_token)
    assert secure("-o", "json", "repository", "list").code == 0
    denied = secure("repository", "create", "r2")
    assert denied.code == 1 and "viewer" in denied.err
    monkeypatch.setenv("LAZYREG_TOKEN", "not-a-token")
    assert secure("repository", "list").code == 1
    monkeypatch.delenv("LAZYREG_TOKEN")

    monkeypatch.setattr("sys.stdin", io.StringIO(ADMIN_PASSWORD + "\n"))
    logged_in = secure("-o", "json", "login", "-u", "admin", "--password-stdin")
    assert logged_in.code == 0 and logged_in.json()["username"] == "admin"
    assert logged_in.json()["stored_in"] == str(stored)
    logged_out = secure("-o", "json", "logout")
    assert logged_out.json() == {"server": secure.server, "logged_out": True}
    assert secure("repository", "list").code == 1


def test_token_list_and_revoke(secure: Runner, monkeypatch: pytest.MonkeyPatch,
                               tmp_path: Path) -> None:
    assert login(secure, monkeypatch, "admin", ADMIN_PASSWORD) == 0
    stored = tmp_path / "config" / "lazyreg" / "tokens.json"
    first = json.loads(stored.read_text())[secure.server.rstrip("/")]["token"]
    assert login(secure, monkeypatch, "admin", ADMIN_PASSWORD) == 0
    listed = secure("-o", "json", "token", "list")
    assert listed.code == 0, listed.err
    assert listed.json()["count"] == 2
    assert {t["username"] for t in listed.json()["results"]} == {"admin"}
    table = secure("token", "list", "--user", "admin")
    assert table.code == 0 and "admin" in table.out and "api" in table.out
    first_id = jwt.decode(first, options={"verify_signature": False})["jti"]
    [other] = [t["id"] for t in listed.json()["results"] if t["id"] != first_id]
    revoked = secure("-o", "json", "token", "revoke", first_id)
    assert revoked.code == 0, revoked.err
    monkeypatch.setenv("LAZYREG_TOKEN", first)  # the revoked one
    assert secure("repository", "list").code == 1
    monkeypatch.delenv("LAZYREG_TOKEN")
    assert [t["id"] for t in secure("-o", "json", "token", "list").json()["results"]] == [
        other]
    missing = secure("token", "revoke", "nosuchtoken")
    assert missing.code == 1 and "not found" in missing.err and "Traceback" not in missing.err
