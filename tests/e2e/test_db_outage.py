"""PostgreSQL stopped and started under a running server (issue 20, finding 9).

While the database is down: /v2 answers 503 with an OCI body and Retry-After,
the API a JSON 503, the status page says the database is unreachable, every
log line of a request carries its request id, and a pull of content the
server's memory already holds keeps working for 30 s (within `cache_grace`).
Then the database comes back and the server serves everything again, without
a restart. The PostgreSQL server is this test's own: stopping it hurts no
other test.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres import PostgresServer, start_postgres
from tests.rig import Lazyreg, Upstream, dir_blobs, skopeo_copy, start_lazyreg

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

OUTAGE = 30.0  # seconds the database stays down while pulls must keep working


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    if server is None:
        pytest.fail("no PostgreSQL server binaries: run `make test`, which installs them")
    yield server
    server.stop()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def pull(ref: str, dest: Path) -> dict[str, int]:
    skopeo_copy(ref, dest)
    return dir_blobs(dest)


def log_lines(server: Lazyreg, since: int) -> list[dict[str, object]]:
    lines = []
    for raw in server.logfile.read_bytes()[since:].decode(errors="replace").splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines


def wait_ready(server: Lazyreg, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if get(f"{server.url}/readyz")[0] == 200:
            return
        time.sleep(0.2)
    raise AssertionError("not ready again")


def test_postgres_stopped_and_started_under_a_server(private_postgres: PostgresServer,
                                                     upstream: Upstream,
                                                     tmp_path: Path) -> None:
    server = start_lazyreg(tmp_path / "data", database_url=private_postgres.create_database(),
                           env={"LAZYREG_LOG_FORMAT": "json"})
    try:
        task = server.setup_mirror(upstream, "mirror", "fixtures/small", policy="immediate")
        assert task["state"] == "completed", task
        ref = f"{server.host}/mirror:v1"
        warm = pull(ref, tmp_path / "warm")
        assert len(warm) == 4

        mark = server.logfile.stat().st_size
        private_postgres.halt()
        down = time.monotonic()

        # What memory cannot answer: 503 in every area, each in its own shape.
        status, headers, body = get(f"{server.url}/v2/never-seen/manifests/v1")
        assert status == 503, body
        assert int(headers["Retry-After"]) > 0
        assert json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"
        status, headers, body = get(f"{server.url}/api/v1/repositories/")
        assert status == 503 and headers["Content-Type"].startswith("application/json")
        assert "database is unreachable" in json.loads(body)["detail"]
        assert int(headers["Retry-After"]) > 0
        status, headers, body = get(f"{server.url}/", {"Accept": "text/html"})
        assert status == 503 and headers["Content-Type"].startswith("text/html")
        assert b"the database is unreachable" in body
        assert get(f"{server.url}/readyz")[0] == 503

        # What memory holds keeps being served: the same pull, at once and near the end.
        assert pull(ref, tmp_path / "early") == warm
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - down)))
        assert pull(ref, tmp_path / "late") == warm
        outage = time.monotonic() - down

        private_postgres.resume()
        wait_ready(server)
        # Back without a restart: what needs the database answers again.
        assert server.ok("GET", "repositories/")["count"] == 1
        assert get(f"{server.url}/v2/never-seen/manifests/v1")[0] == 404
        assert get(f"{server.url}/", {"Accept": "text/html"})[0] == 200
        assert pull(ref, tmp_path / "after") == warm

        lines = log_lines(server, mark)
        in_requests = [line for line in lines
                       if line["logger"] in ("lazyreg.access", "lazyreg.app", "aiohttp.server")
                       or "exception" in line]
        assert any("503, the database is unreachable" in str(line["message"])
                   for line in in_requests)
        assert all(line["request_id"] for line in in_requests), \
            [line for line in in_requests if not line["request_id"]][:3]
        print(f"outage held {outage:.1f} s")
    finally:
        server.stop()
