"""Disk space from the command line: retain and delete versions, reclaim, orphan cleanup, status."""

from __future__ import annotations

import urllib.request

from tests.cli.conftest import Runner, Servers, sha256, table_row
from tests.cli.test_errors import assert_one_error_line


def sync(cli: Runner, include: str) -> None:
    assert cli("remote", "update", "up", "--include-tags", include).code == 0
    result = cli("repository", "sync", "app", "--remote", "up", "--mirror")
    assert result.code == 0, result.err


def test_versions_retained_deleted_reclaimed_and_cleaned(cli: Runner, servers: Servers) -> None:
    assert cli("remote", "create", "up", "--url", servers.upstream_url, "--upstream-name",
               "library/app").code == 0
    created = cli("-o", "json", "repository", "create", "app", "--retain-versions", "2")
    assert created.json()["retain_versions"] == 2
    for include in ("v1", "v2", "v1"):
        sync(cli, include)
    listed = cli("repository", "versions", "app")  # `list` is the default
    assert listed.code == 0 and table_row(listed.out, "3")
    assert [v["number"] for v in cli("-o", "json", "repository", "versions", "app")
            .json()["results"]] == [3, 2]

    latest = cli("repository", "versions", "delete", "app", "3")
    assert latest.code == 1
    assert_one_error_line(latest.err)
    assert "latest version" in latest.err
    deleted = cli("repository", "versions", "delete", "app", "2")
    assert (deleted.code, deleted.out) == (0, "deleted version 2 of repository app\n")
    assert [v["number"] for v in cli("-o", "json", "repository", "versions", "list", "app")
            .json()["results"]] == [3]

    # Pull v1's layer, then reclaim it: the layer goes, the repository stays as it was.
    assert cli("distribution", "create", "app", "--base-path", "app",
               "--repository", "app").code == 0
    layer = b"a" * 1000
    with urllib.request.urlopen(f"{servers.url}/v2/app/blobs/{sha256(layer)}") as resp:
        assert resp.read() == layer
    reclaimed = cli("repository", "reclaim", "app")
    assert reclaimed.code == 0, reclaimed.err
    assert reclaimed.out == "reclaimed 1 layers (0.0 MiB)\n"
    assert "layers" in reclaimed.err  # the progress bar

    # Version 2 held v2: its tag, manifest, config and own layer are orphans now.
    cleaned = cli("orphans", "cleanup", "--protection-time", "0")
    assert cleaned.code == 0, cleaned.err
    assert cleaned.out.startswith("removed 1 tags, 1 manifests, 2 blobs and 2 artifacts")
    status = cli("status").out
    assert table_row(status, "evictable")[1:] == ["0", "0 B", "none"]
    assert table_row(status, "kept")[1] == "2"  # v1's manifest and config
    assert cli("-o", "json", "check").json()["ok"] is True
