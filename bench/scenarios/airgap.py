"""9. Air gap: export of a version holding one big layer not stored yet, then its import.

Export fetches the layer lazily (one upstream GET) and writes the `.tar`; import
reads it on a second, empty server. Both are timed and their memory measured as
the growth of the server's peak RSS (VmHWM, reset just before) over its idle
RSS: the goal is that it stays flat in the layer's size (< 50 MiB for 1 GiB).
The reference is the usual workaround, `skopeo copy docker://upstream
oci-archive:` of the same image, timed on the same machine in the same run.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from bench.report import LAZYREG, Goal, Row, Section
from bench.scenarios import Context
from bench.scenarios.memory import idle_rss_kib
from bench.servers import log, mirror, reset_peak_rss
from tests.rig import Lazyreg

SKOPEO = "skopeo copy (workaround)"
GROWTH_GOAL = Goal("value", "<", 50)


def _task(server: Lazyreg, path: str, body: dict[str, object]) -> float:
    started = time.monotonic()
    task = server.wait_task(server.ok("POST", path, body), timeout=1800)
    if task["state"] != "completed":
        raise RuntimeError(f"{path} failed: {task}")
    return time.monotonic() - started


def _growth(server: Lazyreg, idle_kib: int) -> float:
    return (server.peak_rss_kib() - idle_kib) / 1024


def run(ctx: Context) -> Section:
    mib = 64 if ctx.quick else 1024
    reps = ctx.reps if ctx.quick else min(ctx.reps, 3)
    section = Section("airgap", f"9. Air gap: export and import of a {mib} MiB layer",
                      [LAZYREG, SKOPEO], [(LAZYREG, SKOPEO)])
    up = ctx.servers.upstream(big_mib=mib, many_tags=200 if mib == 64 else 0)
    times: dict[str, list[float]] = {LAZYREG: [], SKOPEO: []}
    import_times: list[float] = []
    export_growth: list[float] = []
    import_growth: list[float] = []
    for _ in range(reps):
        out = ctx.servers.scratch("airgap")
        archive = out / "big.tar"
        with ctx.servers.lazyreg() as near:
            mirror(near, up, "big", "fixtures/big")
            idle = idle_rss_kib(near.proc.pid)
            reset_peak_rss(near.proc.pid)
            times[LAZYREG].append(_task(near, "repositories/big/versions/1/export/",
                                        {"output": str(archive)}))
            export_growth.append(_growth(near, idle))
        with ctx.servers.lazyreg() as far:
            idle = idle_rss_kib(far.proc.pid)
            reset_peak_rss(far.proc.pid)
            import_times.append(_task(far, "repositories/big/import/",
                                      {"input": str(archive)}))
            import_growth.append(_growth(far, idle))
        started = time.monotonic()
        subprocess.run(["skopeo", "copy", "--src-tls-verify=false",
                        f"docker://{up.host}/fixtures/big:latest",
                        f"oci-archive:{Path(out) / 'skopeo.tar'}:latest"],
                       check=True, capture_output=True, timeout=1800)
        times[SKOPEO].append(time.monotonic() - started)
    log(f"airgap: export {min(times[LAZYREG]):.1f} s, +{max(export_growth):.0f} MiB;"
        f" import {min(import_times):.1f} s, +{max(import_growth):.0f} MiB")
    section.rows += [
        Row(f"export (lazy fetch of the {mib} MiB layer included)", "s", times, "lower"),
        Row("import of that archive on an empty server", "s", {LAZYREG: import_times},
            "lower"),
        Row("export: server RSS growth over idle", "MiB", {LAZYREG: export_growth}, "lower",
            GROWTH_GOAL, plot=False),
        Row("import: server RSS growth over idle", "MiB", {LAZYREG: import_growth}, "lower",
            GROWTH_GOAL, plot=False),
    ]
    section.notes.append(
        "Growth: VmHWM of the `lazyreg serve` process over the task alone (reset with"
        " /proc/PID/clear_refs just before) minus its idle VmRSS. skopeo copies the same"
        f" image from the upstream into an oci-archive. {reps} repetition(s).")
    return section
