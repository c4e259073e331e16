"""Every failure is one `error: ...` line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import socket

import pytest

import lazyreg
from lazyreg.cli import main
from tests.cli.conftest import Runner


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def assert_one_error_line(err: str) -> None:
    assert err.startswith("error: ")
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_unknown_remote(cli: Runner) -> None:
    result = cli("remote", "show", "x")
    assert (result.code, result.out, result.err) == (1, "", "error: remote 'x' not found\n")
    result = cli("-o", "json", "remote", "delete", "x")
    assert (result.code, result.out, result.err) == (1, "", "error: remote 'x' not found\n")


def test_server_unreachable(cli: Runner) -> None:
    server = f"http://127.0.0.1:{closed_port()}"
    result = cli("remote", "list", server=server)
    assert result.code == 1
    assert_one_error_line(result.err)
    assert result.err.startswith(f"error: cannot reach {server}")


def test_validation_error_names_the_field(cli: Runner) -> None:
    result = cli("remote", "create", "x", "--url", "ftp://nope", "--upstream-name", "a")
    assert result.code == 1
    assert result.err == "error: url: must be an http:// or https:// URL with a host\n"
    result = cli("remote", "create", "x", "--url", "http://h", "--upstream-name", "A")
    assert result.err.startswith("error: upstream_name: ")
    result = cli("repository", "create", "bad//name")
    assert result.err.startswith("error: name: ")


def test_sync_of_an_unknown_remote(cli: Runner) -> None:
    assert cli("repository", "create", "alpine").code == 0
    result = cli("repository", "sync", "alpine", "--remote", "nope")
    assert (result.code, result.err) == (1, "error: remote 'nope' not found\n")
    result = cli("repository", "sync", "ghost", "--remote", "nope")
    assert (result.code, result.err) == (1, "error: repository 'ghost' not found\n")


def test_conflict(cli: Runner) -> None:
    assert cli("repository", "create", "alpine").code == 0
    result = cli("repository", "create", "alpine")
    assert (result.code, result.err) == (1, "error: repository 'alpine' already exists\n")


@pytest.mark.parametrize("args", [
    ["remote", "create", "x"],  # --url and --upstream-name missing
    ["remote", "create", "x", "--url", "http://h", "--upstream-name", "a", "--policy", "often"],
    ["remote", "list", "--limit", "many"],
    ["-o", "yaml", "status"],
    ["nonsense"],
    ["remote", "show"],
    ["distribution", "create", "d", "--version", "latest"],
])
def test_bad_arguments(cli: Runner, args: list[str]) -> None:
    result = cli(*args)
    assert result.code == 2
    assert result.out == ""
    assert_one_error_line(result.err)


def test_task_not_found(cli: Runner) -> None:
    result = cli("task", "show", "0000")
    assert (result.code, result.err) == (1, "error: task '0000' not found\n")


def test_server_from_environment(capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    server = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("LAZYREG_SERVER", server)
    assert main(["status"]) == 1
    assert capsys.readouterr().err.startswith(f"error: cannot reach {server}")


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"lazyreg {lazyreg.__version__}\n"
    assert main(["--help"]) == 0
    assert "repository" in capsys.readouterr().out
    assert main(["remote"]) == 2  # a group without a command shows its help
    assert "create" in capsys.readouterr().out
