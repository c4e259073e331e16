"""`lazyreg check`: exit 0 when database and storage agree, 1 with the problems listed."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import Runner, Servers, table_row
from tests.cli.test_sync import setup_remote


def stored_file(cli: Runner, digest: str) -> Path:
    root = Path(cli("-o", "json", "status").json()["storage"]["path"])
    [path] = root.rglob(digest.removeprefix("sha256:"))
    return path


def test_check_lists_what_is_wrong_and_exits_1(cli: Runner, servers: Servers) -> None:
    setup_remote(cli, servers)
    assert cli("repository", "sync", "app", "--remote", "up").code == 0
    clean = cli("check")
    assert clean.code == 0, clean.err
    assert table_row(clean.out, "ok") == ["ok", "yes"]
    assert table_row(clean.out, "files") == ["files", str(len(servers.upstream.manifests)
                                                        + len(servers.upstream.configs))]

    missing, corrupt = sorted(servers.upstream.configs)
    stored_file(cli, missing).unlink()
    path = stored_file(cli, corrupt)
    path.write_bytes(b"x" * path.stat().st_size)  # same size: only --verify sees it

    found = cli("check")
    assert (found.code, found.err) == (1, "")
    assert table_row(found.out, "ok") == ["ok", "no"]
    assert table_row(found.out, "artifacts_without_file") == ["artifacts_without_file", "1"]
    assert f"artifacts_without_file: {missing}" in found.out.splitlines()
    assert "digest_mismatches" not in found.out

    verified = cli("-o", "json", "check", "--verify")
    assert verified.code == 1
    report = verified.json()
    assert (report["ok"], report["verified"]) == (False, True)
    assert report["artifacts_without_file"] == [missing]
    assert report["digest_mismatches"] == [corrupt]
