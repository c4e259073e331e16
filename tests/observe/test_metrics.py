"""The metric families: names, labels, one registry per app, exact counting."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from lazyreg.observe.metrics import REQUEST_BUCKETS, Metrics
from tests.observe.scrape import parse


def test_every_family_is_exported_with_prometheus_names() -> None:
    families = {s.name for s in parse(Metrics().render().decode()).samples}
    for name in ("lazyreg_cache_hits_total", "lazyreg_cache_misses_total",
                 "lazyreg_blob_served_bytes_total", "lazyreg_upstream_blob_bytes_total",
                 "lazyreg_downloads_in_flight", "lazyreg_evictions_total",
                 "lazyreg_evicted_bytes_total", "lazyreg_storage_bytes",
                 "lazyreg_storage_artifacts", "lazyreg_build_info"):
        assert name in families, name


def test_two_apps_in_one_process_count_apart() -> None:
    a, b = Metrics(), Metrics()
    a.blob_served("storage", 100)
    a.upstream_request("blob", "GET", 200)
    b.blob_served("upstream", 7)
    sa, sb = parse(a.render().decode()), parse(b.render().decode())
    assert sa.value("lazyreg_cache_hits_total") == 1
    assert sa.value("lazyreg_cache_misses_total") == 0
    assert sb.value("lazyreg_cache_hits_total") == 0
    assert sb.value("lazyreg_cache_misses_total") == 1
    assert sa.value("lazyreg_upstream_requests_total", kind="blob", status="200") == 1
    assert sb.value("lazyreg_upstream_requests_total") == 0


def test_blob_bytes_by_source_and_the_traffic_figures() -> None:
    m = Metrics()
    m.blob_served("storage", 1000)
    m.blob_served("storage", 24)
    m.blob_served("upstream", 500)
    m.upstream_blob_bytes(500)
    s = parse(m.render().decode())
    assert s.value("lazyreg_blob_served_bytes_total", source="storage") == 1024
    assert s.value("lazyreg_blob_served_bytes_total", source="upstream") == 500
    assert s.value("lazyreg_upstream_blob_bytes_total") == 500
    assert (m.traffic.hits, m.traffic.misses, m.traffic.storage_bytes) == (2, 1, 1024)
    assert m.recent.total() == m.traffic


def test_requests_by_route_template_with_latency() -> None:
    m = Metrics()
    for status in (200, 200, 404):
        m.request("GET", "/v2/{name}/manifests/{reference}", status, 0.003)
    m.request("BREW", "unmatched", 405, 0.0001)  # a made-up method is "other"
    s = parse(m.render().decode())
    route = "/v2/{name}/manifests/{reference}"
    assert s.value("lazyreg_http_requests_total", route=route, status="200") == 2
    assert s.value("lazyreg_http_requests_total", route=route, status="404") == 1
    assert s.value("lazyreg_http_request_duration_seconds_count", route=route) == 3
    assert s.value("lazyreg_http_request_duration_seconds_bucket", route=route, le="0.005") == 3
    assert s.value("lazyreg_http_request_duration_seconds_bucket", route=route, le="0.0025") == 0
    assert s.value("lazyreg_http_requests_total", method="other", status="405") == 1
    assert {"BREW"} & {lab["method"] for lab in s.labels("lazyreg_http_requests_total")} == set()


def test_request_counting_can_be_switched_off() -> None:
    m = Metrics(count_requests=False)
    m.request("GET", "/v2/", 200, 0.001)
    m.blob_served("storage", 10)  # the rest still counts
    s = parse(m.render().decode())
    assert s.value("lazyreg_http_requests_total") == 0
    assert s.value("lazyreg_cache_hits_total") == 1


@pytest.mark.parametrize("status", [200, 503, None])
def test_upstream_requests_by_kind_and_status(status: int | None) -> None:
    m = Metrics()
    m.upstream_request("manifest", "HEAD", status)
    s = parse(m.render().decode())
    label = "error" if status is None else str(status)
    assert s.value("lazyreg_upstream_requests_total", kind="manifest", method="HEAD",
                   status=label) == 1


def test_tasks_storage_stale_and_evictions() -> None:
    m = Metrics()
    m.task_finished("sync", "completed", 2.5)
    m.task_finished("sync", "failed", 0.2)
    m.stale_served("manifest")
    m.evicted(4096)
    m.set_storage({"layer": (3, 30000), "config": (1, 900), "manifest": (2, 1800)})
    m.set_downloads_in_flight(2)
    s = parse(m.render().decode())
    assert s.value("lazyreg_tasks_total", kind="sync", state="completed") == 1
    assert s.value("lazyreg_task_duration_seconds_sum", kind="sync") == pytest.approx(2.7)
    assert s.value("lazyreg_stale_serves_total", kind="manifest") == 1
    assert (s.value("lazyreg_evictions_total"), s.value("lazyreg_evicted_bytes_total")) == (1, 4096)
    assert s.value("lazyreg_storage_bytes", kind="layer") == 30000
    assert s.value("lazyreg_storage_artifacts") == 6
    assert s.value("lazyreg_downloads_in_flight") == 2
    assert not m.storage_stale()


def test_request_families_match_prometheus_client_own_histogram() -> None:
    ours = Metrics()
    registry = CollectorRegistry()
    counter = Counter("lazyreg_http_requests", "h", ["method", "route", "status"],
                      registry=registry)
    histogram = Histogram("lazyreg_http_request_duration_seconds", "h", ["method", "route"],
                          buckets=REQUEST_BUCKETS, registry=registry)
    # bucket bounds exactly, just around them, and far out
    values = [b + d for b in REQUEST_BUCKETS for d in (-1e-9, 0.0, 1e-9)] + [0.0, 1e6]
    for i, seconds in enumerate(values):
        route = "/a" if i % 2 else "/b/{name}"
        ours.request("GET", route, 200 + i % 3, seconds)
        counter.labels("GET", route, str(200 + i % 3)).inc()
        histogram.labels("GET", route).observe(seconds)

    def keyed(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in parse(text).samples
                if not s.name.endswith("_created")}
    expected = keyed(generate_latest(registry).decode())
    got = {k: v for k, v in keyed(ours.render().decode()).items()
           if k[0].startswith("lazyreg_http_")}
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key


def test_joins_count_apart_and_their_bytes_are_saved() -> None:
    m = Metrics(clock=lambda: 120.0)
    m.blob_served("upstream", 100)
    for _ in range(19):
        m.blob_served("join", 100)
    s = parse(m.render().decode())
    assert s.value("lazyreg_cache_misses_total") == 1
    assert s.value("lazyreg_cache_joins_total") == 19
    assert s.value("lazyreg_blob_served_bytes_total", source="join") == 1900
    assert (m.traffic.misses, m.traffic.joins, m.traffic.saved_bytes) == (1, 19, 1900)
    taken = m.take_pending()
    assert list(taken) == [2] and taken[2].joins == 19 and not m.pending
    m.give_back(taken)  # a flush that failed: kept for the next one
    assert m.pending[2].joins == 19


def test_multiprocess_mode_sums_the_files_of_every_worker(tmp_path, monkeypatch) -> None:
    import subprocess
    import sys

    code = ("from lazyreg.observe.metrics import Metrics; m = Metrics();"
            " m.request('GET', '/v2/', 200, 0.001); m.blob_served('join', 5);"
            " import sys; sys.stdout.buffer.write(m.render())")
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    outputs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              check=True).stdout.decode() for _ in range(2)]
    s = parse(outputs[-1])  # the second worker's scrape: both workers' counts
    assert s.value("lazyreg_http_requests_total", route="/v2/") == 2
    assert s.value("lazyreg_cache_joins_total") == 2
    assert "process_resident_memory_bytes" not in outputs[-1]
