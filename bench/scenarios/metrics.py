"""7. What request metrics cost: the small-request rate of scenario 4, metrics on and off.

Two lazyreg servers from the same code, each an on_demand mirror of
`fixtures/small` whose v1 layer was pulled once (so stored): one as it ships
(every request counted by route and status, with a latency histogram), one
started with LAZYREG_REQUEST_METRICS=false. Everything else is the same in
both, request ids and the one log line per request included, so the ratio
is the cost of the metrics alone. The goal: metrics cost under 5%.

The rate is measured two ways: requests per second, and requests per second
of the server's own CPU (user + system, from /proc). On a machine that other
work shares, the first swings with that work by more than the 5% sought; the
second is what a request costs the server, which that work hardly moves. The
goal is on the second.
"""

from __future__ import annotations

import statistics
import timeit

from bench.clients import MANIFEST_ACCEPT, pull_blobs, rate_tool, request_run
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
            for rep in range(2 * ctx.reps):
                for column in ctx.rotated(list(bases), rep):
                    pid = servers[column].proc.pid
                    before = cpu_seconds(pid)
                    result = request_run(bases[column] + path, method, headers,
                                         connections=CONNECTIONS, duration=duration)
                    used = cpu_seconds(pid) - before
                    rates[column].append(result.rate)
                    if used > 0:
                        per_cpu[column].append((result.requests + 1) / used)  # +1: the check
            log(f"metrics {case}: " + ", ".join(
                f"{c} {max(rates[c]):.0f}/s, {max(per_cpu[c]):.0f}/CPU-s" for c in bases))
            section.rows.append(Row(f"{case}: per server CPU second", "requests/CPU-s",
                                    per_cpu, "higher", Goal("ratio", ">=", 0.95)))
            section.rows.append(Row(f"{case}: per second, {CONNECTIONS} connections",
                                    "requests/s", rates, "higher", plot=False))
            # The same question without the noise: what counting costs, over what a
            # request costs the server in all.
            share = counting_cost_us() / (1e6 / statistics.median(per_cpu[LAZYREG])) * 100
            section.rows.append(Row(f"{case}: counting a request, timed in process, as a share"
                                    " of the server's CPU per request", "%", {LAZYREG: [share]},
                                    "lower", Goal("value", "<", 5.0), plot=False))
    section.notes += [
        f"Client: {rate_tool()}, {CONNECTIONS} concurrent connections, {duration:g} s per"
        f" measurement, {2 * ctx.reps} interleaved repetitions per server. Server CPU is"
        " read from /proc/<pid>/stat before and after each measurement.",
        "Both servers write one log line per request (to a file) and send X-Request-Id; only"
        " the per-request families (lazyreg_http_requests_total and"
        " lazyreg_http_request_duration_seconds) are off in the second.",
        "The client shares the 2 cores with the servers, and so does any other work on the"
        " machine: requests per second move with it; requests per CPU second much less.",
    ]
    return section
