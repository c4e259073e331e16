"""4. Small-request rate: manifest GET by tag and blob HEAD at 16 connections.

lazyreg (an on_demand mirror of `fixtures/small` whose v1 layers were pulled
once, so stored) against the upstream distribution serving the same content
from its own storage; the warm distribution proxy is shown for reference.
"""

from __future__ import annotations

from bench.clients import MANIFEST_ACCEPT, pull_blobs, rate_tool, request_rate
from bench.report import LAZYREG, Goal, Row, Section
from bench.scenarios import Context
from bench.servers import log, mirror

DIST, PROXY = "distribution", "distribution proxy (cached)"
CONNECTIONS = 16


def run(ctx: Context) -> Section:
    section = Section("small", "4. Small-request rate", [LAZYREG, DIST, PROXY],
                      [(LAZYREG, DIST)])
    duration = 1.0 if ctx.quick else 3.0
    up = ctx.servers.upstream()
    v1 = up.tag("fixtures/small", "v1")
    layer = v1["layers"][0]
    with ctx.servers.lazyreg() as lz, ctx.servers.proxy(up) as px:
        mirror(lz, up, "small", "fixtures/small")
        bases = {LAZYREG: f"{lz.url}/v2/small", DIST: f"{up.url}/v2/fixtures/small",
                 PROXY: f"{px.url}/v2/fixtures/small"}
        for base in bases.values():  # stores the layer in lazyreg and in the proxy
            pull_blobs(f"{base}/blobs/{layer['digest']}", layer["digest"], layer["size"])
        requests = {
            "manifest GET by tag": ("GET", "/manifests/v1", {"Accept": MANIFEST_ACCEPT}),
            "blob HEAD (stored blob)": ("HEAD", f"/blobs/{layer['digest']}", {}),
        }
        for case, (method, path, headers) in requests.items():
            rates: dict[str, list[float]] = {c: [] for c in bases}
            for rep in range(ctx.reps):
                for column in ctx.rotated(list(bases), rep):
                    rates[column].append(request_rate(
                        bases[column] + path, method, headers, connections=CONNECTIONS,
                        duration=duration))
            log(f"small {case}: " + ", ".join(f"{c} {max(v):.0f}/s" for c, v in rates.items()))
            section.rows.append(Row(f"{case}, {CONNECTIONS} connections", "requests/s", rates,
                                    "higher", Goal("ratio", ">=", 0.5)))
    section.notes += [
        f"Client: {rate_tool()}, {CONNECTIONS} concurrent connections, {duration:g} s per"
        " measurement, every response checked to be a 200 (one request also checked with"
        " aiohttp first).",
        "The client shares the 2 cores with the server it measures.",
        "The proxy answers a manifest by tag only after asking the upstream (a HEAD each"
        " time), so its rate is bounded by the upstream's.",
    ]
    return section
