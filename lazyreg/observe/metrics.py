"""The Prometheus metric families of one application, and plain methods that move them.

Each application owns a `Metrics` with its own `CollectorRegistry` (nothing
is registered globally), so several apps can run in one process and each
server process exports its own figures. In a worker of `lazyreg serve
--workers N` (PROMETHEUS_MULTIPROC_DIR set by the supervisor) prometheus-client
keeps the values in files of that directory and `render` sums every worker's:
the request families are then prometheus-client's own (`SharedRequestFamilies`),
gauges say how workers add up (in flight: the live ones' sum; stored bytes:
the most recent reading), and the per-process `process_*` families are left out.
Labels stay low-cardinality: route templates (never paths or digests), a fixed
set of methods, HTTP statuses, upstream request kinds, task kinds and states, artifact kinds.

The methods are O(1) and do not await: they are called on the request path,
once per request or per blob response (never per chunk).

Families (see `docs()` for the list with help texts):

    lazyreg_http_requests_total{method,route,status}
    lazyreg_http_request_duration_seconds{method,route}      histogram
    lazyreg_cache_hits_total{kind}, lazyreg_cache_joins_total{kind},
    lazyreg_cache_misses_total{kind}
    lazyreg_blob_served_bytes_total{source}                  source: storage | join | upstream
    lazyreg_upstream_requests_total{kind,method,status,distribution}
    lazyreg_upstream_blob_bytes_total{distribution}          received from upstreams
    lazyreg_downloads_in_flight
    lazyreg_tasks_total{kind,state}
    lazyreg_task_duration_seconds{kind,state}                histogram
    lazyreg_stale_serves_total{kind}
    lazyreg_evictions_total, lazyreg_evicted_bytes_total
    lazyreg_storage_bytes{kind}, lazyreg_storage_artifacts{kind}
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.process_collector import ProcessCollector

import lazyreg
from lazyreg import accounting
from lazyreg.observe.request_families import RequestFamilies, SharedRequestFamilies
from lazyreg.observe.traffic import MinuteRing, Traffic

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0)
TASK_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0)
STORAGE_KINDS = ("manifest", "config", "layer")
# Seconds the stored-bytes figures (a database query) are reused between scrapes.
STORAGE_TTL = 5.0
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # set by lazyreg/supervisor.py for its workers
PENDING_MINUTES = 60  # minutes of counts kept for the database while it cannot be written


class Metrics:
    def __init__(self, *, count_requests: bool = True,
                 clock: Callable[[], float] = time.time,
                 multiprocess: bool | None = None) -> None:
        # `count_requests=False` skips the per-request families (to measure their cost).
        self.count_requests = count_requests
        self.clock = clock
        self.multiprocess = (bool(os.environ.get(MULTIPROCESS_DIR)) if multiprocess is None
                             else multiprocess)
        self.started = clock()
        self.traffic = Traffic()  # since this process started
        self.recent = MinuteRing(60, clock)
        # What this process counted, per minute, not yet added to the database's figures.
        self.pending: dict[int, Traffic] = {}
        self.storage_checked = float("-inf")  # monotonic time of the last storage refresh
        r = self.registry = CollectorRegistry()
        if not self.multiprocess:
            ProcessCollector(registry=r)
        Gauge("lazyreg_build_info", "The running lazyreg version (always 1)", ["version"],
              registry=r, multiprocess_mode="max").labels(lazyreg.__version__).set(1)
        self._http: RequestFamilies | SharedRequestFamilies
        if self.multiprocess:
            self._http = SharedRequestFamilies(REQUEST_BUCKETS, r)
        else:
            self._http = RequestFamilies(REQUEST_BUCKETS)
            r.register(self._http)
        self._hits = Counter("lazyreg_cache_hits", "Blob GETs answered from storage",
                             ["kind"], registry=r)
        self._joins = Counter(
            "lazyreg_cache_joins",
            "Blob GETs that joined a download in flight (of this process or another's)",
            ["kind"], registry=r)
        self._misses = Counter(
            "lazyreg_cache_misses", "Blob GETs that started a download from the upstream",
            ["kind"], registry=r)
        self._served = Counter(
            "lazyreg_blob_served_bytes",
            "Blob bytes sent to clients, by where they came from: storage, a download the"
            " request joined (both saved an upstream transfer), or a download it started",
            ["source"], registry=r)
        self._upstream = Counter(
            "lazyreg_upstream_requests",
            "HTTP requests sent to upstream registries (each retry counts), by kind"
            " (blob, manifest, tags, token, ping, referrers, catalog, other) and status"
            " ('error' when no answer came), and the distribution whose request caused it"
            " (its base path; '' for syncs and tasks)",
            ["kind", "method", "status", "distribution"], registry=r)
        self._fetched = Counter(
            "lazyreg_upstream_blob_bytes",
            "Blob bytes received from upstream registries (lazy downloads and syncs), by"
            " the distribution whose request caused them ('' for syncs and tasks)",
            ["distribution"], registry=r)
        self._fetched.labels("")  # exported from the start, like an unlabelled counter
        self._in_flight = Gauge(
            "lazyreg_downloads_in_flight",
            "Blob downloads this process (or these workers) lead or follow", registry=r,
            multiprocess_mode="livesum")
        self._tasks = Counter("lazyreg_tasks", "Tasks that ended, by kind and final state",
                              ["kind", "state"], registry=r)
        self._task_seconds = Histogram(
            "lazyreg_task_duration_seconds", "Seconds a task ran (syncs: their duration),"
            " by kind and final state", ["kind", "state"], buckets=TASK_BUCKETS, registry=r)
        self._stale = Counter(
            "lazyreg_stale_serves",
            "Answers served from storage because the upstream could not be asked",
            ["kind"], registry=r)
        self._evictions = Counter("lazyreg_evictions", "Stored blobs deleted to free space",
                                  registry=r)
        self._evicted_bytes = Counter("lazyreg_evicted_bytes",
                                      "Bytes of the stored blobs deleted to free space",
                                      registry=r)
        self._storage_bytes = Gauge("lazyreg_storage_bytes",
                                    "Bytes stored, by artifact kind (from the database)",
                                    ["kind"], registry=r, multiprocess_mode="mostrecent")
        self._storage_count = Gauge("lazyreg_storage_artifacts",
                                    "Artifacts stored, by kind (from the database)",
                                    ["kind"], registry=r, multiprocess_mode="mostrecent")
        # The filesystem under the storage directory (what `df` says), for "nearly full".
        self._volume_size = Gauge("lazyreg_storage_volume_size_bytes",
                                  "Size of the filesystem holding the storage directory",
                                  registry=r, multiprocess_mode="mostrecent")
        self._volume_free = Gauge("lazyreg_storage_volume_free_bytes",
                                  "Bytes free on the filesystem holding the storage directory",
                                  registry=r, multiprocess_mode="mostrecent")
        # With workers: the lowest over the live ones (one failing check shows).
        self._ready = Gauge("lazyreg_ready",
                            "1 when this part of the readiness check (/readyz) passes, else 0",
                            ["check"], registry=r, multiprocess_mode="livemin")
        for kind in STORAGE_KINDS:
            self._storage_bytes.labels(kind)
            self._storage_count.labels(kind)
        for source in ("storage", "join", "upstream"):
            self._served.labels(source)
        self._hit, self._miss = self._hits.labels("blob"), self._misses.labels("blob")
        self._join = self._joins.labels("blob")
        self._from_storage = self._served.labels("storage")
        self._from_join = self._served.labels("join")
        self._from_upstream = self._served.labels("upstream")
        # labels() costs more than inc(): children are kept, keyed by their label values.
        self._upstream_children: dict[tuple[str, str, str, str], Counter] = {}

    # ------------------------------------------------------------ HTTP requests

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One answered request; `route` is its template (e.g. /v2/{name}/blobs/{digest})."""
        if self.count_requests:
            self._http.observe(method if method in METHODS else "other", route, status, seconds)

    # ------------------------------------------------------------ blobs

    def blob_served(self, source: str, nbytes: int) -> None:
        """A blob GET answered: from "storage" (a hit), from a download it joined ("join"),
        or from one it started ("upstream": a miss)."""
        counted = (self.traffic, self.recent.now(), self._pending_now())
        if source == "storage":
            self._hit.inc()
            self._from_storage.inc(nbytes)
            for t in counted:
                t.hits += 1
                t.storage_bytes += nbytes
        elif source == "join":
            self._join.inc()
            self._from_join.inc(nbytes)
            for t in counted:
                t.joins += 1
                t.joined_bytes += nbytes
        else:
            self._miss.inc()
            self._from_upstream.inc(nbytes)
            for t in counted:
                t.misses += 1
                t.upstream_bytes += nbytes

    def _pending_now(self) -> Traffic:
        minute = int(self.clock() // 60)
        counts = self.pending.get(minute)
        if counts is None:
            if len(self.pending) >= PENDING_MINUTES:  # the database is away: the oldest goes
                del self.pending[min(self.pending)]
            counts = self.pending[minute] = Traffic()
        return counts

    def take_pending(self) -> dict[int, Traffic]:
        """What was counted since the last take, per minute, for the database."""
        taken, self.pending = self.pending, {}
        return taken

    def give_back(self, taken: Mapping[int, Traffic]) -> None:
        """Counts `take_pending` returned that could not be written: kept for the next try."""
        for minute, counts in taken.items():
            if minute in self.pending:
                self.pending[minute].add(counts)
            elif len(self.pending) < PENDING_MINUTES:
                self.pending[minute] = counts

    # ------------------------------------------------------------ upstream (UpstreamObserver)

    def upstream_request(self, kind: str, method: str, status: int | None) -> None:
        label = "error" if status is None else str(status)
        account = accounting.current()
        distribution = ""
        if account is not None:
            account.requests += 1
            distribution = account.distribution
        key = (kind, method, label, distribution)
        child = self._upstream_children.get(key)
        if child is None:
            child = self._upstream.labels(kind, method if method in METHODS else "other",
                                          label, distribution)
            self._upstream_children[key] = child
        child.inc()

    def upstream_blob_bytes(self, nbytes: int) -> None:
        account = accounting.current()
        distribution = ""
        if account is not None:
            account.bytes += nbytes
            distribution = account.distribution
        self._fetched.labels(distribution).inc(nbytes)
        self.traffic.fetched_bytes += nbytes
        self.recent.now().fetched_bytes += nbytes
        self._pending_now().fetched_bytes += nbytes

    # ------------------------------------------------------------ the rest

    def task_finished(self, kind: str, state: str, seconds: float) -> None:
        self._tasks.labels(kind, state).inc()
        self._task_seconds.labels(kind, state).observe(seconds)

    def stale_served(self, kind: str) -> None:
        self._stale.labels(kind).inc()

    def evicted(self, nbytes: int) -> None:
        self._evictions.inc()
        self._evicted_bytes.inc(nbytes)

    def set_downloads_in_flight(self, n: int) -> None:
        self._in_flight.set(n)

    def set_storage(self, by_kind: Mapping[str, tuple[int, int]]) -> None:
        """Stored (count, bytes) by artifact kind."""
        for kind, (count, nbytes) in by_kind.items():
            self._storage_count.labels(kind).set(count)
            self._storage_bytes.labels(kind).set(nbytes)
        self.storage_checked = time.monotonic()

    def set_ready(self, checks: Mapping[str, str]) -> None:
        """The readiness checks' answers: {part: "ok" or why not}."""
        for part, answer in checks.items():
            self._ready.labels(part).set(1 if answer == "ok" else 0)

    def set_volume(self, size: int, free: int) -> None:
        self._volume_size.set(size)
        self._volume_free.set(free)

    def storage_stale(self) -> bool:
        return time.monotonic() - self.storage_checked >= STORAGE_TTL

    def render(self) -> bytes:
        """The Prometheus text exposition of every family (of every worker, in a worker)."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        from prometheus_client.multiprocess import MultiProcessCollector

        summed = CollectorRegistry()
        MultiProcessCollector(summed)  # type: ignore[no-untyped-call]
        return generate_latest(summed)
