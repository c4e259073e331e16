"""6. Memory: peak RSS (VmHWM) of a fresh lazyreg server over a lazy pull and over a sync.

VmHWM is a high-water mark, so every measurement uses a fresh server. The
distribution proxy's own VmHWM over the same lazy pull is shown beside it.
"""

from __future__ import annotations

from bench.clients import pull_blobs
from bench.report import LAZYREG, Goal, Row, Section
from bench.scenarios import Context
from bench.scenarios.sync import create_mirror, many_upstream, timed_sync
from bench.servers import big_layer, log, mirror, peak_rss_kib, registry_pid

PROXY = "distribution proxy"
GOAL = Goal("value", "<", 150)


def _mib(kib: int) -> float:
    return kib / 1024


def run(ctx: Context) -> Section:
    section = Section("memory", "6. Memory: peak RSS", [LAZYREG, PROXY], [(LAZYREG, PROXY)])
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
                baseline.append(_mib(lz.peak_rss_kib()))
                pull_blobs(f"{lz.url}/v2/big/blobs/{blob.digest}", blob.digest, blob.size)
                peaks[LAZYREG].append(_mib(lz.peak_rss_kib()))
            with ctx.servers.proxy(up) as px:
                pull_blobs(f"{px.url}/v2/fixtures/big/blobs/{blob.digest}", blob.digest,
                           blob.size)
                peaks[PROXY].append(_mib(peak_rss_kib(registry_pid(px))))
        log(f"memory, lazy pull of {mib} MiB: lazyreg {max(peaks[LAZYREG]):.0f} MiB")
        section.rows.append(Row(f"lazy first pull of a {mib} MiB blob", "MiB", peaks, "lower",
                                GOAL))
    up = many_upstream(ctx, tags)
    sync_peaks: list[float] = []
    for _ in range(reps):
        with ctx.servers.lazyreg() as lz:
            create_mirror(lz, up, "many", "fixtures/many")
            timed_sync(lz, "many")
            sync_peaks.append(_mib(lz.peak_rss_kib()))
    log(f"memory, sync of {tags} tags: lazyreg {max(sync_peaks):.0f} MiB")
    section.rows.append(Row(f"on_demand sync of {tags} tags", "MiB", {LAZYREG: sync_peaks},
                            "lower", GOAL))
    section.rows.insert(0, Row("idle: started, one small sync done", "MiB",
                               {LAZYREG: baseline}, "lower"))
    first, last = section.rows[1], section.rows[len(sizes)]
    growth = (last.median(LAZYREG) or 0) - (first.median(LAZYREG) or 0)
    if len(sizes) > 1:
        section.notes.append(
            f"Flat in blob size: the median peak grows by {growth:+.1f} MiB from the"
            f" {sizes[0]} MiB blob to the {sizes[-1]} MiB blob ({sizes[-1] // sizes[0]}x"
            " the bytes).")
    section.notes += [
        "VmHWM from /proc/PID/status of the server process (lazyreg: the `lazyreg serve`"
        " process; proxy: the `docker-registry` process), read after the pull or the sync,"
        " each on a fresh server.",
        f"{reps} repetition(s) per row.",
    ]
    return section
