"""`repository sync` against a small fake upstream: progress, result, failure."""

from __future__ import annotations

import time
from typing import Any

from lazyreg.cli.render import human_bytes
from lazyreg.types import FINAL_STATES
from tests.cli.conftest import Runner, Servers, table_row
from tests.cli.test_errors import assert_one_error_line, closed_port

# The sync's record step still calls SQLAlchemy's deprecated Result.tuples()
# (lazyreg/db/content.py); with warnings as errors the task would fail on it.


def setup_remote(cli: Runner, servers: Servers, *extra: str) -> None:
    for args in (["remote", "create", "up", "--url", servers.upstream_url, "--upstream-name",
                  "library/app", *extra],
                 ["repository", "create", "app"]):
        result = cli(*args)
        assert result.code == 0, result.err


def test_sync_shows_progress_then_the_new_version(cli: Runner, servers: Servers) -> None:
    setup_remote(cli, servers)
    result = cli("repository", "sync", "app", "--remote", "up")
    assert result.code == 0, result.err
    assert result.out == ("created version 1: 2 tags, 2 manifests, 4 blobs"
                          " (added 2 tags, 2 manifests, 4 blobs)\n")
    for counter in ("tags", "manifests", "blobs"):
        assert counter in result.err  # the progress bars, on stderr
    assert "error" not in result.err

    again = cli("repository", "sync", "app", "--remote", "up")
    assert (again.code, again.out) == (0, "no changes\n")

    # on_demand: manifests and image configs are stored, layers wait for a pull.
    artifacts = cli("-o", "json", "artifact", "list").json()
    assert artifacts["summary"]["by_kind"]["manifest"]["count"] == 2
    assert artifacts["summary"]["by_kind"]["config"]["count"] == 2
    assert artifacts["summary"]["by_kind"]["layer"] == {"count": 0, "bytes": 0}
    table = cli("artifact", "list").out
    for digest, data in servers.upstream.configs.items():
        assert table_row(table, digest)[1:3] == ["config", human_bytes(len(data))]
    for digest, data in servers.upstream.manifests.items():
        assert table_row(table, digest)[1:3] == ["manifest", human_bytes(len(data))]

    status = cli("status").out
    stored = [*servers.upstream.manifests.values(), *servers.upstream.configs.values()]
    assert table_row(status, "total") == ["total", str(len(stored)),
                                          human_bytes(sum(map(len, stored)))]
    assert table_row(status, "layer") == ["layer", "0", "0 B"]
    assert table_row(status, "remotes") == ["remotes", "1"]
    assert table_row(status, "repositories") == ["repositories", "1"]


def test_sync_json_prints_the_final_task(cli: Runner, servers: Servers) -> None:
    setup_remote(cli, servers, "--include-tags", "v1*")
    result = cli("-o", "json", "repository", "sync", "app", "--remote", "up", "--mirror")
    assert result.code == 0, result.err
    task = result.json()
    assert task["state"] == "completed"
    assert task["params"] == {"repository": "app", "remote": "up", "mirror": True}
    assert task["created_resources"] == ["repositories/app/versions/1/"]
    assert task["progress"]["tags"] == {"done": 1, "total": 1}
    assert result.err == ""
    shown = cli("-o", "json", "task", "show", task["id"]).json()
    assert shown["id"] == task["id"]
    assert task["id"] in cli("task", "list", "--state", "completed").out


def wait_until_ended(cli: Runner, task_id: str, seconds: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        task: dict[str, Any] = cli("-o", "json", "task", "show", task_id).json()
        if task["state"] in FINAL_STATES:
            return task
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} still {task['state']} after {seconds} s")


def test_sync_no_wait(cli: Runner, servers: Servers) -> None:
    setup_remote(cli, servers)
    result = cli("repository", "sync", "app", "--remote", "up", "--no-wait")
    assert result.code == 0, result.err
    first_id = result.out.removeprefix("started task ").split()[0]
    task = cli("-o", "json", "repository", "sync", "app", "--remote", "up",
                   "--no-wait").json()
    assert task["state"] in ("waiting", "running", "completed")
    assert task["id"] != first_id
    # Both go on without the CLI; waiting here also keeps them out of the teardown.
    assert wait_until_ended(cli, first_id)["state"] == "completed"
    assert wait_until_ended(cli, task["id"])["state"] == "completed"


def test_failed_sync_exits_1_with_its_error(cli: Runner) -> None:
    for args in (["remote", "create", "down", "--url", f"http://127.0.0.1:{closed_port()}",
                  "--upstream-name", "library/app"],
                 ["repository", "create", "app"]):
        assert cli(*args).code == 0
    result = cli("repository", "sync", "app", "--remote", "down")
    assert result.code == 1
    assert result.out == ""
    last = result.err.splitlines()[-1] + "\n"
    assert_one_error_line(last)
    assert last.startswith("error: sync failed: ")
    as_json = cli("-o", "json", "repository", "sync", "app", "--remote", "down")
    assert as_json.code == 1
    assert as_json.json()["state"] == "failed"
    assert as_json.err.startswith("error: sync failed: ")
