"""12. Workers: `lazyreg serve --workers N` at 1 and 2 workers, and RSS per worker.

Small-request rate (manifest GET by tag, 16 connections) and cached blob
throughput (a stored blob, 8 clients) of lazyreg with 1 and 2 workers, beside
distribution serving the same content from its storage on the same cores.
Then, with 2 workers: idle RSS of each worker, and the peak (VmHWM, reset just
before) of the worker processes over a lazy first pull of the big blob
(1 GiB in a full run).
"""

from __future__ import annotations

from pathlib import Path

from bench.clients import MANIFEST_ACCEPT, pull_blobs, request_rate
from bench.report import LAZYREG, Goal, Row, Section
from bench.scenarios import Context
from bench.scenarios.memory import idle_rss_kib
from bench.servers import big_layer, log, mirror, peak_rss_kib, private_kib, reset_peak_rss

DIST = "distribution"
ONE, TWO = "lazyreg, 1 worker", "lazyreg, 2 workers"
CONNECTIONS = 16
CLIENTS = 8
IDLE_GOAL = Goal("value", "<=", 70)  # issue 22, per worker
PEAK_GOAL = Goal("value", "<=", 100)
GROWS = Goal("ratio", ">=", 1.2, of=(TWO, ONE))  # the design: rates grow with N


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _speed(ctx: Context, section: Section, duration: float) -> None:
    up = ctx.servers.upstream()
    blob = big_layer(up)
    rates: dict[str, list[float]] = {ONE: [], TWO: [], DIST: []}
    speeds: dict[str, list[float]] = {ONE: [], TWO: [], DIST: []}
    dist = {"manifest": f"{up.url}/v2/fixtures/small/manifests/v1",
            "blob": f"{up.url}/v2/fixtures/big/blobs/{blob.digest}"}
    for column, workers in ((ONE, "1"), (TWO, "2")):
        with ctx.servers.lazyreg(args=["--workers", workers]) as lz:
            mirror(lz, up, "small", "fixtures/small")
            mirror(lz, up, "big", "fixtures/big")
            urls = {"manifest": f"{lz.url}/v2/small/manifests/v1",
                    "blob": f"{lz.url}/v2/big/blobs/{blob.digest}"}
            pull_blobs(urls["blob"], blob.digest, blob.size)  # stored from now on
            for rep in range(ctx.reps):
                for name, where in ctx.rotated([(column, urls), (DIST, dist)], rep):
                    if name == DIST and len(rates[DIST]) >= ctx.reps:
                        continue  # distribution measured once per repetition
                    rates[name].append(request_rate(
                        where["manifest"], "GET", {"Accept": MANIFEST_ACCEPT},
                        connections=CONNECTIONS, duration=duration))
                    speeds[name].append(pull_blobs(where["blob"], blob.digest, blob.size,
                                                   CLIENTS).mb_per_s)
    log("workers: " + ", ".join(f"{c} {max(v):.0f}/s" for c, v in rates.items() if v))
    section.rows.append(Row(f"manifest GET by tag, {CONNECTIONS} connections", "requests/s",
                            rates, "higher", GROWS))
    section.rows.append(Row(f"cached {blob.size >> 20} MiB blob, {CLIENTS} clients", "MB/s",
                            speeds, "higher", GROWS, plot=False))


def _memory(ctx: Context, section: Section) -> None:
    mib = 64 if ctx.quick else 1024
    up = ctx.servers.upstream(big_mib=mib, many_tags=200 if mib == 64 else 0)
    blob = big_layer(up)
    idle: list[float] = []
    private: list[float] = []
    peaks: list[float] = []
    for _ in range(1 if ctx.quick else 2):
        with ctx.servers.lazyreg(args=["--workers", "2"]) as lz:
            mirror(lz, up, "big", "fixtures/big")
            workers = _children(lz.proc.pid)
            idle += [idle_rss_kib(pid) / 1024 for pid in workers]
            private += [private_kib(pid) / 1024 for pid in workers]
            for pid in workers:
                reset_peak_rss(pid)
            pull_blobs(f"{lz.url}/v2/big/blobs/{blob.digest}", blob.digest, blob.size)
            peaks.append(max(peak_rss_kib(pid) for pid in workers) / 1024)
    log(f"workers, RSS per worker: idle {max(idle):.0f} MiB ({max(private):.0f} MiB private),"
        f" peak over {mib} MiB {max(peaks):.0f} MiB")
    # A value goal reads the LAZYREG samples (not a column here): the same ones.
    section.rows.append(Row("idle RSS per worker (--workers 2)", "MiB",
                            {TWO: idle, LAZYREG: idle}, "lower", IDLE_GOAL, plot=False))
    section.rows.append(Row("idle private memory (USS) per worker: what one more costs", "MiB",
                            {TWO: private, LAZYREG: private}, "lower", plot=False))
    section.rows.append(Row(f"lazy first pull of a {mib} MiB blob: peak RSS of a worker",
                            "MiB", {TWO: peaks, LAZYREG: peaks}, "lower", PEAK_GOAL,
                            plot=False))


def run(ctx: Context) -> Section:
    section = Section("workers", "12. Workers: 1 and 2 server processes", [ONE, TWO, DIST],
                      [(TWO, ONE), (TWO, DIST)])
    _speed(ctx, section, 1.0 if ctx.quick else 3.0)
    _memory(ctx, section)
    section.notes += [
        "Every process shares the machine's 2 cores with the load generator (ab or"
        " aiohttp) and with each other; distribution is the upstream registry serving the"
        " same content from its own storage.",
        "RSS per worker: VmRSS of each worker process (children of the supervisor) once"
        " settled after start-up and an on_demand sync; the peak is the highest VmHWM of"
        " a worker over the pull alone. Private memory (USS) is the part of the RSS no other"
        " process shares: the RSS also counts pages of the interpreter and of shared"
        " libraries (libpython, libcrypto, pydantic-core, SQLite: about 20 MiB), resident"
        " once on the machine whatever the number of workers.",
    ]
    return section
