"""CRUD through the CLI, table and JSON output."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Runner, Servers, table_row


def remote(cli: Runner, name: str = "hub", *extra: str) -> Any:
    result = cli("-o", "json", "remote", "create", name, "--url", "https://r.example.test",
                     "--upstream-name", "library/alpine", *extra)
    assert result.code == 0, result.err
    return result.json()


def test_remote_create_list_show_update_delete(cli: Runner) -> None:
    created = cli("remote", "create", "hub", "--url", "https://r.example.test",
                      "--upstream-name", "library/alpine", "--include-tags", "v1*",
                      "--include-tags", "3.*", "--username", "bob", "--password", "s3cret",
                      "--no-tls-verify", "--download-concurrency", "4")
    assert created.code == 0, created.err
    assert "library/alpine" in created.out
    assert "s3cret" not in created.out

    listed = cli("remote", "list")
    assert listed.code == 0
    assert table_row(listed.out, "hub") == ["hub", "https://r.example.test", "library/alpine",
                                            "on_demand", "v1*, 3.*", "-"]

    shown = cli("-o", "json", "remote", "show", "hub").json()
    assert isinstance(shown, dict)
    assert shown["include_tags"] == ["v1*", "3.*"]
    assert shown["has_password"] is True and "password" not in shown
    assert shown["tls_verify"] is False
    assert shown["download_concurrency"] == 4

    updated = cli("-o", "json", "remote", "update", "hub", "--policy", "immediate",
                      "--tls-verify")
    assert updated.code == 0, updated.err
    assert updated.json()["policy"] == "immediate"
    assert updated.json()["tls_verify"] is True
    assert updated.json()["username"] == "bob"

    deleted = cli("remote", "delete", "hub")
    assert (deleted.code, deleted.out.strip()) == (0, "deleted remote hub")
    gone = cli("remote", "show", "hub")
    assert (gone.code, gone.out, gone.err) == (1, "", "error: remote 'hub' not found\n")


def test_remote_password_from_stdin_and_ca_cert_file(cli: Runner, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("from-stdin\n"))
    assert remote(cli, "hub", "--password-stdin")["has_password"] is True
    missing = cli("remote", "update", "hub", "--ca-cert", str(tmp_path / "none.pem"))
    assert missing.code == 1
    assert missing.err.startswith("error: cannot read --ca-cert")
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    refused = cli("remote", "update", "hub", "--ca-cert", str(bad))
    assert refused.code == 1
    assert refused.err.startswith("error: ca_cert: must be PEM-encoded")
    nothing = cli("remote", "update", "hub")
    assert (nothing.code, nothing.err) == (1, "error: nothing to update: give at least one"
                                              " option\n")


def test_list_json_is_the_page(cli: Runner) -> None:
    for name in ("a", "b", "c"):
        remote(cli, name)
    page = cli("-o", "json", "remote", "list", "--limit", "2").json()
    assert isinstance(page, dict)
    assert page["count"] == 3
    assert [r["name"] for r in page["results"]] == ["a", "b"]
    assert page["next"]
    table = cli("remote", "list", "--limit", "2")
    assert "2 of 3 shown" in table.out
    rest = cli("-o", "json", "remote", "list", "--limit", "2", "--offset", "2").json()
    assert [r["name"] for r in rest["results"]] == ["c"]


def test_repository_commands(cli: Runner) -> None:
    created = cli("-o", "json", "repository", "create", "alpine", "--description", "[x]")
    assert created.code == 0, created.err
    assert created.json()["latest_version"] == 0
    shown = cli("repository", "show", "alpine")
    assert table_row(shown.out, "description") == ["description", "[x]"]  # not rich markup
    assert table_row(cli("repository", "list").out, "alpine") == ["alpine", "0", "-", "[x]"]
    versions = cli("repository", "versions", "alpine")
    assert table_row(versions.out, "0")[2:] == ["0 tags, 0 manifests, 0 blobs"] * 3
    versions_json = cli("-o", "json", "repository", "versions", "alpine").json()
    assert versions_json["results"][0]["number"] == 0
    updated = cli("-o", "json", "repository", "update", "alpine", "--description", "new")
    assert updated.json()["description"] == "new"
    assert cli("repository", "delete", "alpine").code == 0
    assert cli("repository", "show", "alpine").err == (
        "error: repository 'alpine' not found\n")


def test_distribution_commands(cli: Runner) -> None:
    assert cli("repository", "create", "alpine").code == 0
    created = cli("-o", "json", "distribution", "create", "alpine", "--base-path",
                      "team/alpine", "--repository", "alpine", "--version", "0")
    assert created.code == 0, created.err
    assert created.json()["repository_version"] == 0
    listed = cli("distribution", "list")
    assert table_row(listed.out, "alpine") == ["alpine", "team/alpine", "alpine", "0", "no"]
    unpinned = cli("-o", "json", "distribution", "update", "alpine", "--latest",
                       "--private")
    assert unpinned.json()["repository_version"] is None
    assert unpinned.json()["private"] is True
    assert table_row(cli("distribution", "list").out, "alpine") == [
        "alpine", "team/alpine", "alpine", "latest", "yes"]
    shown = cli("distribution", "show", "alpine").out
    assert table_row(shown, "base_path") == ["base_path", "team/alpine"]
    clash = cli("distribution", "update", "alpine", "--latest", "--version", "1")
    assert (clash.code, clash.err) == (1, "error: --latest and --version exclude each other\n")
    nothing = cli("distribution", "update", "alpine")
    assert (nothing.code, nothing.err) == (1, "error: nothing to update: give at least one"
                                              " option\n")
    bad = cli("distribution", "create", "x", "--base-path", "Bad Path", "--repository",
                  "alpine")
    assert bad.code == 1
    assert bad.err.startswith("error: base_path: must be a repository name")
    nope = cli("distribution", "create", "x", "--base-path", "x", "--repository", "nope")
    assert nope.err == "error: repository 'nope' not found\n"
    pinned = cli("distribution", "create", "x", "--base-path", "x", "--repository",
                     "alpine", "--version", "7")
    assert pinned.err == ("error: repository_version: repository 'alpine' has no version 7:"
                          " its latest is 0\n")
    assert cli("distribution", "delete", "alpine").out.strip() == (
        "deleted distribution alpine")
    assert cli("-o", "json", "distribution", "list").json()["count"] == 0


def test_status_and_artifacts_when_empty(cli: Runner, servers: Servers) -> None:
    status = cli("status")
    assert status.code == 0
    assert table_row(status.out, "server") == ["server", servers.url]
    assert table_row(status.out, "database") == ["database", "sqlite"]
    assert table_row(status.out, "total") == ["total", "0", "0 B"]
    as_json = cli("-o", "json", "status").json()
    assert as_json["counts"]["remotes"] == 0
    artifacts = cli("-o", "json", "artifact", "list").json()
    assert artifacts["summary"]["count"] == 0
    tasks = cli("-o", "json", "task", "list").json()
    assert tasks["results"] == []


def test_remote_allow_private_redirects(cli: Runner) -> None:
    made = cli("-o", "json", "remote", "create", "inner", "--url", "https://10.0.0.5",
               "--upstream-name", "a", "--allow-private-redirects")
    assert made.code == 0, made.err
    assert made.json()["allow_private_redirects"] is True
    changed = cli("-o", "json", "remote", "update", "inner", "--no-allow-private-redirects")
    assert changed.code == 0 and changed.json()["allow_private_redirects"] is False
