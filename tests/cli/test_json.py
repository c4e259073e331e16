"""`-o json`: every command prints the server's answer as one JSON document.

The scenario runs each command once; the last check compares the commands run
with the app's, so a new command without a JSON case fails here.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import typer

from lazyreg.cli.main import app
from tests.cli.conftest import Runner, Servers


def commands(group: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    if not hasattr(group, "commands"):
        return {prefix}
    found: set[tuple[str, ...]] = set()
    for name, command in group.commands.items():
        found |= commands(command, (*prefix, name))
    return found


def test_every_command_answers_json(cli: Runner, servers: Servers, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    ran: set[tuple[str, ...]] = set()

    def run(command: str, *args: str, code: int = 0, stdin: str = "") -> Any:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        result = cli("-o", "json", *command.split(), *args)
        assert result.code == code, result.err
        ran.add(tuple(command.split()))
        return result.json()

    assert run("remote create", "up", "--url", servers.upstream_url,
               "--upstream-name", "library/app")["name"] == "up"
    assert run("remote update", "up", "--policy", "immediate")["policy"] == "immediate"
    assert run("remote show", "up")["upstream_name"] == "library/app"
    assert run("remote list")["count"] == 1
    assert run("repository create", "app")["latest_version"] == 0
    assert run("repository update", "app", "--description", "d")["description"] == "d"
    assert run("repository show", "app")["name"] == "app"
    assert run("repository list")["count"] == 1
    task = run("repository sync", "app", "--remote", "up")
    assert task["state"] == "completed"
    assert run("repository versions list", "app")["results"][0]["number"] == 1
    assert run("task show", task["id"])["id"] == task["id"]
    assert [t["id"] for t in run("task list")["results"]] == [task["id"]]
    assert run("artifact list", "--kind", "layer")["summary"]["count"] == len(
        servers.upstream.blobs) - len(servers.upstream.configs)  # immediate: every layer
    assert run("distribution create", "app", "--base-path", "app",
               "--repository", "app")["repository_version"] is None
    assert run("distribution update", "app", "--version", "1")["repository_version"] == 1
    assert run("distribution show", "app")["base_path"] == "app"
    assert run("distribution list")["count"] == 1
    assert run("status")["counts"]["distributions"] == 1
    assert run("check")["ok"] is True
    assert run("repository versions delete", "app", "0") == {
        "deleted": "repositories/app/versions/0/"}
    assert run("repository reclaim", "app")["state"] == "completed"
    scheduled = run("repository schedule", "app", "--remote", "up", "--every", "1h")
    assert scheduled["sync_interval"] == 3600 and scheduled["remote"] == "up"
    assert run("repository schedule", "app", "--off") == {
        "deleted": "repositories/app/schedule/"}
    layout = tmp_path / "app.tar"
    assert run("repository export", "app", "--output", str(layout))["state"] == "completed"
    assert run("repository import", "copy", "--input", str(layout))["created_resources"] == [
        "repositories/copy/versions/1/"]
    assert run("orphans cleanup", "--protection-time", "0")["state"] == "completed"
    assert run("distribution delete", "app") == {"deleted": "distributions/app/"}
    assert run("repository delete", "app") == {"deleted": "repositories/app/"}
    assert run("remote delete", "up") == {"deleted": "remotes/up/"}
    assert run("user create", "vera", "--password-stdin", stdin="vera-password\n"
               )["role"] == "viewer"
    assert run("user update", "vera", "--password-stdin", stdin="new-password\n"
               )["role"] == "viewer"
    assert run("user show", "vera")["username"] == "vera"
    assert run("user list")["count"] == 1
    assert run("user delete", "vera") == {"deleted": "users/vera/"}

    assert run("token list") == {"count": 0, "next": None, "previous": None, "results": []}

    # login, logout and a token to revoke need a server with auth on:
    # tests/cli/test_login.py. config and db are not REST clients but the server's
    # settings and database (test_config.py, tests/db/test_upgrade.py).
    every = commands(typer.main.get_command(app)) - {
        ("serve",), ("login",), ("logout",), ("token", "revoke"), ("config", "show"),
        ("config", "check"), ("db", "upgrade")}
    assert ran == every, every - ran
