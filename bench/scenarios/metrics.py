"""7. What request metrics cost: the small-request rate of scenario 4, metrics on and off.

Two lazyreg servers from the same code, each an on_demand mirror of
`fixtures/small` whose v1 layer was pulled once (so stored): one as it ships
(every request counted by route and status, with a latency histogram), one
started with LAZYREG_REQUEST_METRICS=false. Everything else is the same in
both, request ids and the one log line per request included, so the ratio
is the cost of the metrics alone. The goal: metrics cost under 5%.

Both servers are measured at the same time, each by its own client, so that
whatever else runs on the machine weighs on both alike (measured one after the
other, the spread from other work on this shared 2-core machine was larger
than the 5% sought). The rate is read two ways: requests per second, and
requests per second of the server's own CPU (user + system, from /proc), which
is what a request costs the server. The goal is on the second, as the ratio
of each repetition's pair (on ÷ off), whose median must be at least 0.95. A
last row times the counting itself in this process, against the server's CPU
per request.
"""

from __future__ import annotations

import statistics
import threading
import timeit

from bench.clients import MANIFEST_ACCEPT, RateRun, pull_blobs, rate_tool, request_run
from bench.report import LAZYREG, Goal, Row, Section
from bench.scenarios import Context
from bench.servers import cpu_seconds, log, mirror
from lazyreg.observe.metrics import Metrics

OFF = "lazyreg, request metrics off"
CONNECTIONS = 16


def counting_cost_us() -> float:
    """Microseconds `Metrics.request` takes per call, timed in this process (best of 5)."""
    metrics = Metrics()
    calls = 100_000
    best = min(timeit.repeat(
        lambda: metrics.request("GET", "/v2/{name}/manifests/{reference}", 200, 0.002),
        number=calls, repeat=5))
    return best / calls * 1e6


def _measure(into: dict[str, RateRun], column: str, url: str, method: str,
             headers: dict[str, str], duration: float) -> None:
    into[column] = request_run(url, method, headers, connections=CONNECTIONS,
                               duration=duration)


def run(ctx: Context) -> Section:
    section = Section("metrics", "7. Cost of request metrics (small-request rate)",
                      [LAZYREG, OFF], [(LAZYREG, OFF)])
    duration = 1.0 if ctx.quick else 3.0
    up = ctx.servers.upstream()
    layer = up.tag("fixtures/small", "v1")["layers"][0]
    with ctx.servers.lazyreg() as on, \
            ctx.servers.lazyreg(env={"LAZYREG_REQUEST_METRICS": "false"}) as off:
        servers = {LAZYREG: on, OFF: off}
        bases = {}
        for column, server in servers.items():
            mirror(server, up, "small", "fixtures/small")
            bases[column] = f"{server.url}/v2/small"
            pull_blobs(f"{bases[column]}/blobs/{layer['digest']}", layer["digest"],
                       layer["size"])
        requests = {
            "manifest GET by tag": ("GET", "/manifests/v1", {"Accept": MANIFEST_ACCEPT}),
            "blob HEAD (stored blob)": ("HEAD", f"/blobs/{layer['digest']}", {}),
        }
        for case, (method, path, headers) in requests.items():
            rates: dict[str, list[float]] = {c: [] for c in bases}
            per_cpu: dict[str, list[float]] = {c: [] for c in bases}
            # Twice the repetitions of the other scenarios: the difference sought is small.
            for _ in range(2 * ctx.reps):
                runs: dict[str, RateRun] = {}
                cpu = {c: cpu_seconds(servers[c].proc.pid) for c in bases}
                clients = [threading.Thread(target=_measure, args=(
                    runs, c, bases[c] + path, method, headers, duration)) for c in bases]
                for client in clients:
                    client.start()
                for client in clients:
                    client.join()
                for column in bases:
                    if column not in runs:
                        raise RuntimeError(f"the client of {column} failed; see above")
                    used = cpu_seconds(servers[column].proc.pid) - cpu[column]
                    rates[column].append(runs[column].rate)
                    if used <= 0:
                        raise RuntimeError(f"{column} used no CPU in {duration:g} s of load")
                    # +1: the request that checks the answer first
                    per_cpu[column].append((runs[column].requests + 1) / used)
            log(f"metrics {case}: " + ", ".join(
                f"{c} {max(rates[c]):.0f}/s, {max(per_cpu[c]):.0f}/CPU-s" for c in bases))
            section.rows.append(Row(f"{case}: per server CPU second", "requests/CPU-s",
                                    per_cpu, "higher"))
            # Each repetition measured both at once: its own ratio is the fairest sample.
            paired = [on / off for on, off in zip(per_cpu[LAZYREG], per_cpu[OFF], strict=True)]
            section.rows.append(Row(f"{case}: per server CPU second, metrics on ÷ off, each"
                                    " repetition's own ratio", "ratio", {LAZYREG: paired},
                                    "higher", Goal("value", ">=", 0.95), plot=False))
            section.rows.append(Row(f"{case}: per second, {CONNECTIONS} connections",
                                    "requests/s", rates, "higher", plot=False))
            # The same question without the noise: what counting costs, over what a
            # request costs the server in all.
            share = counting_cost_us() / (1e6 / statistics.median(per_cpu[LAZYREG])) * 100
            section.rows.append(Row(f"{case}: counting a request, timed in process, as a share"
                                    " of the server's CPU per request", "%", {LAZYREG: [share]},
                                    "lower", Goal("value", "<", 5.0), plot=False))
    section.notes += [
        f"Client: {rate_tool()}, {CONNECTIONS} concurrent connections per server, both servers"
        f" at once, {duration:g} s per measurement, {2 * ctx.reps} repetitions. Server CPU"
        " is read from /proc/<pid>/stat before and after each measurement.",
        "Both servers write one log line per request (to a file) and send X-Request-Id; only"
        " the per-request families (lazyreg_http_requests_total and"
        " lazyreg_http_request_duration_seconds) are off in the second.",
        "The clients share the 2 cores with the servers, and so does any other work on the"
        " machine: requests per second move with it; requests per CPU second much less.",
    ]
    return section
