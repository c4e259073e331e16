"""6. Memory: RSS of an idle lazyreg, and its peak (VmHWM) during a lazy pull and a sync.

Idle is VmRSS once started and one small sync done. A peak is VmHWM over the
operation alone: the high-water mark is reset just before it (`clear_refs`),
so that start-up's transient peak does not count; each measurement uses a
fresh server. The distribution proxy's own peak over the same lazy pull is
shown beside it.
"""

from __future__ import annotations

import time

from bench.clients import pull_blobs
from bench.report import LAZYREG, Goal, Row, Section
from bench.scenarios import Context
from bench.scenarios.sync import create_mirror, many_upstream, timed_sync
from bench.servers import (
    big_layer,
    log,
    mirror,
    peak_rss_kib,
    registry_pid,
    reset_peak_rss,
    rss_kib,
)

PROXY = "distribution proxy"
GOAL = Goal("value", "<", 150)
IDLE_GOAL = Goal("value", "<=", 70)  # issue 14
PULL_GOALS = {1024: Goal("value", "<=", 100)}  # MiB pulled -> goal on the peak


def _mib(kib: int) -> float:
    return kib / 1024


def idle_rss_kib(pid: int, quiet: float = 0.5, timeout: float = 10.0) -> int:
    """VmRSS once it has not changed for `quiet` seconds (start-up work settled)."""
    deadline = time.monotonic() + timeout
    last, since = rss_kib(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = rss_kib(pid)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


def run(ctx: Context) -> Section:
    section = Section("memory", "6. Memory: RSS at idle, and at its peak", [LAZYREG, PROXY],
                      [(LAZYREG, PROXY)])
    reps = ctx.reps if ctx.quick else min(ctx.reps, 3)
    sizes = (64,) if ctx.quick else (64, 1024)
    tags = 200 if ctx.quick else 1000
    baseline: list[float] = []
    for mib in sizes:
        up = ctx.servers.upstream(big_mib=mib, many_tags=200 if mib == 64 else 0)
        blob = big_layer(up)
        peaks: dict[str, list[float]] = {LAZYREG: [], PROXY: []}
        for _ in range(reps):
            with ctx.servers.lazyreg() as lz:
                mirror(lz, up, "big", "fixtures/big")
                baseline.append(_mib(idle_rss_kib(lz.proc.pid)))
                reset_peak_rss(lz.proc.pid)
                pull_blobs(f"{lz.url}/v2/big/blobs/{blob.digest}", blob.digest, blob.size)
                peaks[LAZYREG].append(_mib(lz.peak_rss_kib()))
            with ctx.servers.proxy(up) as px:
                reset_peak_rss(registry_pid(px))
                pull_blobs(f"{px.url}/v2/fixtures/big/blobs/{blob.digest}", blob.digest,
                           blob.size)
                peaks[PROXY].append(_mib(peak_rss_kib(registry_pid(px))))
        log(f"memory, lazy pull of {mib} MiB: lazyreg {max(peaks[LAZYREG]):.0f} MiB")
        section.rows.append(Row(f"lazy first pull of a {mib} MiB blob: peak", "MiB", peaks,
                                "lower", (GOAL, PULL_GOALS[mib]) if mib in PULL_GOALS
                                else GOAL))
    up = many_upstream(ctx, tags)
    sync_peaks: list[float] = []
    for _ in range(reps):
        with ctx.servers.lazyreg() as lz:
            create_mirror(lz, up, "many", "fixtures/many")
            reset_peak_rss(lz.proc.pid)
            timed_sync(lz, "many")
            sync_peaks.append(_mib(lz.peak_rss_kib()))
    log(f"memory, sync of {tags} tags: lazyreg {max(sync_peaks):.0f} MiB")
    section.rows.append(Row(f"on_demand sync of {tags} tags: peak", "MiB",
                            {LAZYREG: sync_peaks}, "lower", GOAL))
    section.rows.insert(0, Row("idle: started, one small sync done", "MiB",
                               {LAZYREG: baseline}, "lower", IDLE_GOAL))
    first, last = section.rows[1], section.rows[len(sizes)]
    growth = (last.median(LAZYREG) or 0) - (first.median(LAZYREG) or 0)
    if len(sizes) > 1:
        section.notes.append(
            f"Flat in blob size: the median peak grows by {growth:+.1f} MiB from the"
            f" {sizes[0]} MiB blob to the {sizes[-1]} MiB blob ({sizes[-1] // sizes[0]}x"
            " the bytes).")
    section.notes += [
        "Idle: VmRSS of the `lazyreg serve` process, once its RSS stopped changing after"
        " start-up and one on_demand sync of fixtures/big. Peaks: VmHWM from /proc/PID/status"
        " of the server process (lazyreg: the `lazyreg serve` process; proxy: the"
        " `docker-registry` process) over the pull or the sync alone (reset with"
        " /proc/PID/clear_refs just before), each on a fresh server.",
        f"{reps} repetition(s) per row.",
    ]
    return section
