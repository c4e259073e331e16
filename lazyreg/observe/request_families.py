"""The per-request families, counted in plain dicts and handed to Prometheus at scrape time.

prometheus_client's `Counter.inc` and `Histogram.observe` take a lock each
(a few microseconds together), which is most of what a small request costs
us beyond aiohttp's own work. Requests are counted on the event loop only,
and scrapes are rendered there too, so plain integers need no lock: counting
is a dict lookup and two additions, and `collect` builds the families when
`/metrics` is read.

    lazyreg_http_requests_total{method,route,status}
    lazyreg_http_request_duration_seconds{method,route}   histogram
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric

REQUESTS = ("lazyreg_http_requests", "HTTP requests answered, by route template and status")
DURATION = ("lazyreg_http_request_duration_seconds",
            "Seconds from a request's arrival to its response headers (a blob body streams"
            " after them)")


@dataclass
class _Latency:
    counts: list[int]  # per bucket, not cumulative; the last one is +Inf
    total: float = 0.0


@dataclass(eq=False)  # a registry keeps its collectors in a dict: hashed by identity
class RequestFamilies:
    """A prometheus_client collector; `observe` is called on the event loop only."""

    buckets: Sequence[float]
    requests: dict[tuple[str, str, int], int] = field(default_factory=dict)
    latency: dict[tuple[str, str], _Latency] = field(default_factory=dict)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        latency = self.latency.get((method, route))
        if latency is None:
            latency = self.latency[(method, route)] = _Latency([0] * (len(self.buckets) + 1))
        latency.counts[bisect_left(self.buckets, seconds)] += 1  # first bound >= seconds
        latency.total += seconds

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(*REQUESTS, labels=("method", "route", "status"))
        yield HistogramMetricFamily(*DURATION, labels=("method", "route"))

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(*REQUESTS, labels=("method", "route", "status"))
        for (method, route, status), count in sorted(self.requests.items()):
            requests.add_metric((method, route, str(status)), count)
        yield requests
        duration = HistogramMetricFamily(*DURATION, labels=("method", "route"))
        bounds = [*(_le(b) for b in self.buckets), "+Inf"]
        for (method, route), latency in sorted(self.latency.items()):
            cumulative, running = [], 0
            for bound, count in zip(bounds, latency.counts, strict=True):
                running += count
                cumulative.append((bound, float(running)))
            duration.add_metric((method, route), cumulative, latency.total)
        yield duration


class SharedRequestFamilies:
    """The same families as prometheus-client's own, for a worker of `--workers N`.

    Their values live in the multiprocess directory, where `/metrics` sums every
    worker's; each observation takes prometheus-client's lock (microseconds).
    """

    def __init__(self, buckets: Sequence[float], registry: CollectorRegistry) -> None:
        self._requests = Counter(REQUESTS[0], REQUESTS[1], ["method", "route", "status"],
                                 registry=registry)
        self._duration = Histogram(DURATION[0], DURATION[1], ["method", "route"],
                                   buckets=buckets, registry=registry)
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self._requests.labels(method, route, str(status)),
                self._duration.labels(method, route))
        children[0].inc()
        children[1].observe(seconds)


def _le(bound: float) -> str:
    return repr(float(bound))
