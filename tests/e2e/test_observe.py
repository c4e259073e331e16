"""Observability against the real parts: metrics that follow skopeo's pulls exactly, the status
page in headless Chromium, request and task logs, readiness with PostgreSQL stopped.

Ground truth comes from the rig's manifest-index and the upstream registry's own access log.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.e2e.expect import configs, layers, repo_truth
from tests.e2e.test_faults import via
from tests.observe.scrape import Scrape, parse, scrape
from tests.postgres import PostgresServer
from tests.rig import (
    PASSWORD,
    USER,
    FaultProxy,
    Lazyreg,
    Upstream,
    http_json,
    run,
    skopeo_copy,
    start_lazyreg,
)

pytestmark = pytest.mark.e2e

BLOB_GET = r"^/v2/.+/blobs/sha256:"
T = TypeVar("T")


def until(probe: Callable[[], T], done: Callable[[T], bool], timeout: float = 30) -> T:
    """Ask `probe` until `done` holds of its answer; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still {value!r} after {timeout}s")
        time.sleep(0.1)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@dataclass
class Pulled:
    server: Lazyreg
    upstream: Upstream
    sync_mark: int  # upstream access log, before the sync
    pull_mark: int  # and before the pulls
    before: Scrape  # after the sync
    first: Scrape  # after the first pull of fixtures/small:v1
    second: Scrape  # after the second


@pytest.fixture(scope="module")
def pulled(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pulled]:
    """An on_demand mirror of fixtures/small, and v1 pulled twice with skopeo."""
    work = tmp_path_factory.mktemp("observe")
    server = start_lazyreg(work / "data")
    try:
        sync_mark = upstream.mark()
        assert server.setup_mirror(upstream, "mirror", "fixtures/small")["state"] == "completed"
        pull_mark = upstream.mark()
        before = scrape(server.url)
        skopeo_copy(f"{server.host}/mirror:v1", work / "first")
        first = scrape(server.url)
        skopeo_copy(f"{server.host}/mirror:v1", work / "second")
        second = scrape(server.url)
        yield Pulled(server, upstream, sync_mark, pull_mark, before, first, second)
    finally:
        server.stop()


def test_metrics_follow_traffic_exactly(pulled: Pulled) -> None:
    v1 = pulled.upstream.tag("fixtures/small", "v1")
    layer_sizes = [layer["size"] for layer in v1["layers"]]
    before, first, second = pulled.before, pulled.first, pulled.second

    def moved(a: Scrape, b: Scrape, name: str, **labels: str) -> float:
        return b.value(name, **labels) - a.value(name, **labels)

    # The first pull: each layer a miss; the config, stored at sync, a hit.
    assert moved(before, first, "lazyreg_cache_misses_total") == len(layer_sizes)
    assert moved(before, first, "lazyreg_cache_hits_total") == len(configs(v1))
    # The second pull: every one of its blobs a hit, no miss.
    assert moved(first, second, "lazyreg_cache_hits_total") == len(v1["blobs"])
    assert moved(first, second, "lazyreg_cache_misses_total") == 0
    # Upstream blob GETs equal v1's layers, as the upstream's own access log says.
    blob_gets = moved(before, second, "lazyreg_upstream_requests_total", kind="blob",
                      method="GET", status="200")
    assert blob_gets == len(layer_sizes)
    assert pulled.upstream.count("GET", BLOB_GET, since=pulled.pull_mark) == len(layer_sizes)
    # Bytes fetched upstream equal the layers' sizes; bytes served, by where they came from.
    assert moved(before, second, "lazyreg_upstream_blob_bytes_total") == sum(layer_sizes)
    assert moved(before, second, "lazyreg_blob_served_bytes_total",
                 source="upstream") == sum(layer_sizes)
    assert moved(before, second, "lazyreg_blob_served_bytes_total", source="storage") == (
        v1["config"]["size"] + sum(v1["blobs"].values()))
    # The sync's own upstream requests, counted alike (configs are blob GETs too).
    log = pulled.upstream
    assert before.value("lazyreg_upstream_requests_total", kind="blob") == log.count(
        "GET", BLOB_GET, since=pulled.sync_mark) - log.count("GET", BLOB_GET, pulled.pull_mark)
    assert before.value("lazyreg_upstream_requests_total", kind="manifest") == sum(
        log.count(m, r"/manifests/", since=pulled.sync_mark) for m in ("GET", "HEAD"))
    truth = repo_truth(log.index, "fixtures/small")
    assert before.value("lazyreg_upstream_blob_bytes_total") == sum(
        log.index["blobs"][d] for d in truth["configs"])  # the sync fetched the configs
    assert before.value("lazyreg_tasks_total", kind="sync", state="completed") == 1
    assert before.value("lazyreg_task_duration_seconds_count", kind="sync") == 1
    # Requests by route template; no label holds a digest or a repository name. The
    # upstream metrics' `distribution` is a distribution's base path (bounded, issue 24).
    route = "/v2/{name}/blobs/{digest}"
    assert moved(before, second, "lazyreg_http_requests_total", method="GET", route=route,
                 status="200") == 2 * len(v1["blobs"])
    for sample in second.samples:
        for key, value in sample.labels.items():
            if key == "distribution":
                assert value in ("", "mirror"), sample
                continue
            assert "sha256:" not in value and "mirror" not in value, sample
    # Stored bytes, read from the database at scrape time (reused for a few seconds).
    later = until(lambda: scrape(pulled.server.url),
                  lambda s: s.value("lazyreg_storage_bytes", kind="layer") == sum(layer_sizes))
    assert later.value("lazyreg_storage_artifacts", kind="config") == len(truth["configs"])


def chromium(url: str, tmp: Path, *args: str) -> str:
    profile = tmp / f"chromium-profile-{len(list(tmp.glob('chromium-profile-*')))}"
    profile.mkdir()
    proc = run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                "--window-size=1280,2200", *args, url], timeout=120)
    return proc.stdout


def test_status_page_in_chromium_shows_hit_ratio_and_stored_bytes(pulled: Pulled,
                                                                   tmp_path: Path) -> None:
    if shutil.which("chromium") is None:
        pytest.fail("chromium is not installed: run `make test`, which installs it")
    index = pulled.upstream.index
    v1 = index["repos"]["fixtures/small"]["v1"]
    truth = repo_truth(index, "fixtures/small")
    hits = len(configs(v1)) + len(v1["blobs"])
    misses = len(layers(v1))
    ratio = hits / (hits + misses)
    manifests = {d: info["size"] for entry in index["repos"]["fixtures/small"].values()
                 for d, info in entry["manifests"].items()}
    # What an on_demand sync stores (manifests, configs), and the layers the pull fetched.
    stored = (sum(manifests.values()) + sum(index["blobs"][d] for d in truth["configs"])
              + sum(index["blobs"][d] for d in layers(v1)))
    assert pulled.server.artifacts()["summary"]["bytes"] == stored  # the database agrees

    dom = chromium(f"{pulled.server.url}/", tmp_path, "--dump-dom")
    shown = {key: re.search(rf'id="hit-ratio-{key}" class="ratio" data-ratio="([\d.]+)">'
                            rf"([\d.]+)%<", dom) for key in ("overall", "hour")}
    for found in shown.values():
        assert found is not None, dom[:3000]
        assert float(found.group(1)) == pytest.approx(ratio, abs=1e-6)
        assert found.group(2) == f"{ratio * 100:.1f}"
    total = re.search(r'id="stored-total" class="bytes" data-bytes="(\d+)"[^>]*>([^<]+)<', dom)
    assert total is not None and int(total.group(1)) == stored
    assert total.group(2) == f"{stored / 1024:,.1f} KiB"
    layer = re.search(r'id="stored-layer" class="bytes" data-bytes="(\d+)"', dom)
    assert layer is not None and int(layer.group(1)) == sum(index["blobs"][d] for d in layers(v1))
    assert f'id="hits-overall" data-count="{hits}"' in dom
    assert "<svg" in dom and "<script" not in dom

    shot = tmp_path / "status.png"
    chromium(f"{pulled.server.url}/", tmp_path, f"--screenshot={shot}")
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


def test_each_request_logs_the_id_it_answers_with(pulled: Pulled) -> None:
    url = pulled.server.url
    status, headers, _ = get(f"{url}/v2/mirror/manifests/v1", {"X-Request-Id": "client-id.7"})
    assert (status, headers["X-Request-Id"]) == (200, "client-id.7")
    status, headers, _ = get(f"{url}/v2/mirror/tags/list")
    generated = headers["X-Request-Id"]
    hostile = "../../etc/passwd " + "x" * 200
    status, headers, _ = get(f"{url}/v2/mirror/manifests/nope", {"X-Request-Id": hostile})
    assert status == 404 and headers["X-Request-Id"] != hostile
    refused = headers["X-Request-Id"]
    text = pulled.server.logfile.read_text()
    assert re.search(r"lazyreg\.access: GET /v2/mirror/manifests/v1 200 \d+B [\d.]+ms from "
                     r"127\.0\.0\.1 request_id=client-id\.7$", text, re.M)
    assert re.search(rf"GET /v2/mirror/tags/list 200 .* request_id={generated}$", text, re.M)
    assert re.search(rf"GET /v2/mirror/manifests/nope 404 .* request_id={refused}$", text, re.M)
    # skopeo's pulls: a line per request, each with an id.
    access = [line for line in text.splitlines() if " lazyreg.access: " in line]
    blob_lines = [line for line in access if "/blobs/sha256:" in line
                  and " caused upstream " not in line]
    v1 = pulled.upstream.tag("fixtures/small", "v1")
    assert len(blob_lines) == 2 * len(v1["blobs"])
    # and, once done, a line with what each lazy layer GET caused upstream (issue 24)
    caused = [line for line in access if "/blobs/sha256:" in line
              and re.search(r" caused upstream 1 requests \d+B request_id=", line)]
    assert len(caused) == len(v1["layers"])
    assert all(re.search(r" request_id=[0-9a-f]{32}$", line) for line in blob_lines)
    # and one line for the sync task, carrying the id of the request that started it
    task_lines = [line for line in text.splitlines() if re.search(r"task \S+ sync completed", line)]
    assert len(task_lines) == 1 and "request_id=" in task_lines[0]


def test_failed_fetch_is_logged_with_digest_and_status_never_a_credential(
        upstream_basic: Upstream, tmp_path: Path) -> None:
    proxy = FaultProxy(upstream_basic.url, tmp_path / "faults.log")
    server = start_lazyreg(tmp_path / "data", env={"LAZYREG_LOG_FORMAT": "json",
                                                   "LAZYREG_UPSTREAM_RETRIES": "1"})
    try:
        task = server.setup_mirror(via(proxy.url, upstream_basic), "mirror", "fixtures/small",
                                   username=USER, password=PASSWORD)
        assert task["state"] == "completed", task
        proxy.configure(fail_first=1000, fail_status=503, reset=True)
        digest = upstream_basic.tag("fixtures/small", "v1")["layers"][0]["digest"]
        status, headers, _ = get(f"{server.url}/v2/mirror/blobs/{digest}",
                                 {"X-Request-Id": "pull-1"})
        assert (status, headers["X-Request-Id"]) == (502, "pull-1")
        assert proxy.counters()["failed"] == 2  # one try and one retry
    finally:
        server.stop()
        proxy.stop()
    text = server.logfile.read_text()
    lines = text.splitlines()
    assert lines[0].startswith("lazyreg serving")
    entries = [json.loads(line) for line in lines[1:]]  # every log line is a JSON object
    failed = [e for e in entries if e.get("digest") == digest and e["level"] == "WARNING"]
    assert len(failed) == 1, entries
    assert failed[0]["upstream_status"] == 503
    assert digest in failed[0]["message"] and "503" in failed[0]["message"]
    assert failed[0]["request_id"] == "pull-1"  # the request that started the download
    answered = [e for e in entries if e["logger"] == "lazyreg.access"
                and e["request_id"] == "pull-1" and "upstream_requests" not in e]
    assert len(answered) == 1
    # What the failed pull cost upstream: its tries, each counted (issue 24).
    caused = [e for e in entries if e["request_id"] == "pull-1" and "upstream_requests" in e]
    assert len(caused) == 1 and caused[0]["upstream_requests"] >= 1, caused
    assert (answered[0]["status"], answered[0]["route"]) == (502, "/v2/{name}/blobs/{digest}")
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert PASSWORD not in text and basic not in text


def test_downloads_in_flight_show_their_progress(upstream: Upstream, tmp_path: Path) -> None:
    proxy = FaultProxy(upstream.url, tmp_path / "faults.log")
    server = start_lazyreg(tmp_path / "data")
    reader: threading.Thread | None = None
    try:
        server.setup_mirror(via(proxy.url, upstream), "big", "fixtures/big")
        layer = upstream.tag("fixtures/big", "latest")["layers"][0]
        proxy.configure(rate_kib=2048, reset=True)

        def start_pull() -> None:  # reads a little and leaves: the download goes on
            with urllib.request.urlopen(f"{server.url}/v2/big/blobs/{layer['digest']}",
                                        timeout=60) as resp:
                resp.read(64 * 1024)
        reader = threading.Thread(target=start_pull)
        reader.start()

        def page() -> str:
            return get(f"{server.url}/")[2].decode()
        html = until(page, lambda h: re.search(r'data-landed="[1-9]\d*"', h) is not None)
        assert "Downloads in flight on this process (1)" in html
        assert layer["digest"][:19] in html
        assert f'data-size="{layer["size"]}"' in html
        assert scrape(server.url).value("lazyreg_downloads_in_flight") == 1
    finally:
        if reader is not None:
            reader.join(60)
        server.stop()
        proxy.stop()


@pytest.mark.postgres
def test_readyz_follows_the_database(postgres: PostgresServer, tmp_path: Path) -> None:
    server = start_lazyreg(tmp_path / "data", database_url=postgres.create_database())

    def probe(path: str) -> tuple[int, Any]:
        return http_json("GET", f"{server.url}{path}")
    try:
        assert probe("/readyz") == (200, {"status": "ready",
                                          "checks": {"database": "ok", "storage": "ok"}})
        assert probe("/healthz")[0] == 200
        postgres.halt()
        try:
            _, body = until(lambda: probe("/readyz"), lambda r: r[0] == 503)
            assert body["status"] == "not ready"
            assert body["checks"]["storage"] == "ok"
            assert body["checks"]["database"].startswith("unreachable")
            assert probe("/healthz") == (200, {"status": "ok"})
            assert get(f"{server.url}/metrics")[0] == 200  # a scrape answers all the same
        finally:
            postgres.resume()
        until(lambda: probe("/readyz"), lambda r: r[0] == 200)
        assert probe("/healthz")[0] == 200
        assert server.ok("GET", "repositories/")["count"] == 0  # and the API works again
    finally:
        server.stop()


def test_metrics_parse_after_every_kind_of_request(pulled: Pulled) -> None:
    # An error, an unmatched route, a HEAD, the status page: the exposition still parses.
    for path in ("/v2/nope/manifests/x", "/zzz", "/", "/readyz"):
        get(pulled.server.url + path)
    text = get(pulled.server.url + "/metrics")[2].decode()
    assert parse(text).value("lazyreg_http_requests_total", route="unmatched") >= 1
