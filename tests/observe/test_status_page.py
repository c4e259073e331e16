"""The status page: bounded and fast with 1,000 repositories, escaped, no script, honest figures."""

from __future__ import annotations

import base64
import re
import statistics
import time
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from lazyreg.app import create_app
from lazyreg.config import Settings
from lazyreg.observe.keys import METRICS
from lazyreg.observe.queries import LIST_ROWS, Snapshot, TaskRow
from lazyreg.observe.status_page import Download, Page, render
from lazyreg.observe.traffic import Traffic
from tests.observe.conftest import Client

REPOSITORIES = 1000
BUDGET = 0.100  # seconds the page may take with REPOSITORIES repositories


async def create_repositories(client: Client, n: int) -> None:
    async def one(i: int) -> None:
        description = "<script>alert(1)</script> & co" if i == 0 else f"repository {i}"
        resp = await client.post("/api/v1/repositories/",
                                 json={"name": f"repo-{i:04d}", "description": description})
        assert resp.status == 201, await resp.text()
    for i in range(n):  # one at a time: concurrent SQLite writers only wait on each other
        await one(i)
    for i in range(30):  # and some distributions, one pinned to version 0
        body = {"name": f"dist-{i:02d}", "base_path": f"team/app-{i:02d}",
                "repository": f"repo-{i:04d}"}
        if i == 0:
            body["repository_version"] = 0
        resp = await client.post("/api/v1/distributions/", json=body)
        assert resp.status == 201, await resp.text()


async def test_the_page_answers_in_under_100_ms_with_1000_repositories(client: Client) -> None:
    await create_repositories(client, REPOSITORIES)
    timings = []
    for _ in range(7):
        started = time.perf_counter()
        resp = await client.get("/")
        html = await resp.text()
        timings.append(time.perf_counter() - started)
        assert resp.status == 200
    assert statistics.median(timings) < BUDGET, timings

    assert resp.headers["Content-Type"].startswith("text/html")
    assert "script-src" not in resp.headers["Content-Security-Policy"]  # default-src 'none'
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in html
    # The lists are cut, and say where the rest is.
    listed = html[html.index('<section id="repositories">'):html.index('<section id="distri')]
    assert listed.count("<td>repo-") == LIST_ROWS
    assert f"Repositories (<span id=\"repository-count\">{REPOSITORIES:,}</span>)" in html
    assert f"Showing the first {LIST_ROWS} of {REPOSITORIES:,} repositories" in html
    assert "Distributions (30)" in html
    assert "repo-0000 version 0" in html and "repo-0001 (latest)" in html
    assert "no bound" in html


async def test_the_page_shows_this_process_traffic(client: Client) -> None:
    metrics = client.app[METRICS]
    for _ in range(5):
        metrics.blob_served("storage", 1000)
    for _ in range(3):
        metrics.blob_served("upstream", 2000)
    metrics.upstream_blob_bytes(6000)
    html = await (await client.get("/")).text()
    assert re.search(r'id="hit-ratio-overall" class="ratio" data-ratio="0.625000">62.5%<', html)
    assert re.search(r'id="hit-ratio-hour" class="ratio" data-ratio="0.625000">62.5%<', html)
    assert 'id="saved-overall" class="bytes" data-bytes="5000"' in html
    assert 'id="fetched-hour" class="bytes" data-bytes="6000"' in html
    assert '<td id="hits-overall" data-count="5">5</td>' in html


def page(**changes: object) -> Page:
    snap = Snapshot(remotes=0, repositories=0, distributions=0, repository_rows=[],
                    distribution_rows=[], task_rows=[],
                    stored={"manifest": (2, 2000), "config": (1, 1000), "layer": (3, 7000)})
    base = {"version": "1", "database": "SQLite", "worker": "host-1", "started": 0.0,
            "now": 3600.0, "overall": Traffic(), "last_hour": Traffic(),
            "minutes": [Traffic()] * 60, "snapshot": snap, "downloads": [],
            "downloads_total": 0, "bound": None}
    base.update(changes)
    return Page(**base)  # type: ignore[arg-type]


def test_stored_bytes_against_a_bound() -> None:
    html = render(page(bound=20_000))
    assert 'id="stored-total" class="bytes" data-bytes="10000"' in html
    assert 'id="stored-layer" class="bytes" data-bytes="7000"' in html
    assert "(50% used)" in html
    assert "no bound" in render(page())


def test_downloads_in_flight_with_progress() -> None:
    downloads = [Download("sha256:" + "ab" * 32, 4096, 1024)]
    html = render(page(downloads=downloads, downloads_total=25))
    assert "Downloads in flight on this process (25)" in html
    assert "1.0 KiB of 4.0 KiB (25%)" in html
    assert "… and 24 more." in html
    assert "Downloads in flight on this process (0)" in render(page())


def test_tasks_with_state_warnings_and_errors_escaped() -> None:
    task = TaskRow(id="t1", kind="sync", state="completed", subject="repo<1>", created=None,
                   started=None, finished=None, error="",
                   warnings=("tag <b>: manifest unknown",), warning_count=4)
    failed = TaskRow(id="t2", kind="sync", state="failed", subject="r", created=None,
                     started=None, finished=None, error="Unavailable: <down>", warnings=(),
                     warning_count=0)
    snap = page().snapshot
    html = render(page(snapshot=Snapshot(**{**snap.__dict__, "task_rows": [task, failed]})))
    assert "tag &lt;b&gt;: manifest unknown" in html
    assert "… 3 more warnings" in html
    assert "Unavailable: &lt;down&gt;" in html
    assert "repo&lt;1&gt;" in html
    assert ">completed</span>" in html and ">failed</span>" in html


async def test_with_auth_on_the_page_needs_a_login_and_probes_do_not(tmp_path: Path) -> None:
    password = "admin-secret-1"
    settings = Settings(data_dir=tmp_path, auth="on", admin_password=password)
    async with TestClient(TestServer(create_app(settings))) as client:
        resp = await client.get("/", allow_redirects=False)
        # A login form, never a Basic challenge that a browser would keep (issue 20).
        assert resp.status == 303 and resp.headers["Location"] == "/login"
        assert "WWW-Authenticate" not in resp.headers
        assert "lazyreg status" not in await resp.text()
        wrong = base64.b64encode(b"admin:wrong").decode()
        resp = await client.get("/", headers={"Authorization": f"Basic {wrong}"},
                                allow_redirects=False)
        assert resp.status == 303
        admin = base64.b64encode(f"admin:{password}".encode()).decode()
        resp = await client.get("/", headers={"Authorization": f"Basic {admin}"})
        assert resp.status == 200 and "lazyreg status" in await resp.text()
        token = (await (await client.post("/api/v1/tokens/", headers={
            "Authorization": f"Basic {admin}"})).json())["token"]
        resp = await client.get("/", headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 200
        for path in ("/metrics", "/healthz", "/readyz"):
            assert (await client.get(path)).status == 200, path
