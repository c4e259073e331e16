"""`python -m bench.run [--quick] [--reps N] [--only SCENARIO ...]`: run the benchmarks.

Starts the CNCF distribution registry (upstream, and a pull-through cache as
the peer) and lazyreg on loopback, measures each scenario for both in the same
run, and writes RESULTS.md and a PNG plot. Full mode writes `bench/RESULTS.md`
and `bench/results.png`; `--quick` (for CI: small sizes, 2 repetitions, under
about two minutes) and partial runs (`--only`) write under `bench/out/`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import FrameType

from bench.report import RunInfo, Section, write_json, write_markdown, write_plot
from bench.scenarios import Context, registry
from bench.servers import Servers, log, machine_busy_seconds
from tests.rig import ROOT

BENCH = Path(__file__).resolve().parent
ALIASES = {"1": "cached", "2": "lazy", "3": "images", "4": "small", "5": "sync", "6": "memory",
           "7": "metrics", "8": "pullthrough", "9": "airgap", "10": "objectstore",
           "11": "prefetch", "12": "workers", "13": "fleet"}
TOOLS = ("docker-registry", "skopeo", "curl")


def _first_line(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return "?"
    text = (proc.stdout or proc.stderr).strip().splitlines()
    return text[0] if text else "?"


def versions() -> dict[str, str]:
    import aiohttp

    registry_version = _first_line(["docker-registry", "--version"]).split()[-1]
    ab = _first_line(["ab", "-V"]).removeprefix("This is ApacheBench, ").split(" <")[0]
    return {
        "distribution": registry_version,
        "skopeo": _first_line(["skopeo", "--version"]).split()[-1],
        "Python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "curl": _first_line(["curl", "--version"]).split()[1],
        "ab": ab if shutil.which("ab") else "not installed",
        "kernel": platform.release(),
    }


def git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              check=False).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "lazyreg")
    return commit + (" (+ uncommitted changes in lazyreg/)" if dirty else "")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = list(registry())
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes only, 2 repetitions; writes bench/out/RESULTS-quick.md")
    parser.add_argument("--reps", type=int, default=None,
                        help="repetitions per measurement (default 5, quick 2)")
    parser.add_argument("--only", nargs="+", metavar="SCENARIO",
                        choices=names + list(ALIASES),
                        help=f"run only these scenarios: {', '.join(names)} (or 1-13)")
    parser.add_argument("--output", type=Path, default=None,
                        help="the markdown file to write (the plot goes beside it as .png)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory (server logs, storage)")
    args = parser.parse_args(argv)
    if args.reps is None:
        args.reps = 2 if args.quick else 5
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    args.only = [ALIASES.get(s, s) for s in args.only] if args.only else names
    if args.output is None:
        if args.quick:
            args.output = BENCH / "out" / "RESULTS-quick.md"
        elif args.only != names:
            args.output = BENCH / "out" / "RESULTS-partial.md"
        else:
            args.output = BENCH / "RESULTS.md"
    return args


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        print(f"missing {', '.join(missing)}: run `make deps` (needs root)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    mode = "quick" if args.quick else "full"
    info = RunInfo(mode=mode, reps=args.reps,
                   date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                   commit=git_commit(), cores=os.cpu_count(), versions=versions(),
                   load={"start": list(os.getloadavg())})
    root = Path(tempfile.mkdtemp(prefix="lazyreg-bench-"))
    servers = Servers(root)
    ctx = Context(servers, args.reps, args.quick)
    scenarios = registry()
    sections: list[Section] = []
    errors: list[str] = []
    log(f"{mode} mode, {args.reps} repetition(s), scenarios: {', '.join(args.only)};"
        f" working in {root}")
    try:
        for name in args.only:
            log(f"scenario {name}")
            t0, busy0, ours0 = time.monotonic(), machine_busy_seconds(), servers.our_cpu_seconds()
            try:
                section = scenarios[name](ctx)
            except Exception as exc:
                traceback.print_exc()
                errors.append(f"scenario {name} failed: {type(exc).__name__}: {exc}")
                continue
            section.seconds = time.monotonic() - t0
            others = (machine_busy_seconds() - busy0) - (servers.our_cpu_seconds() - ours0)
            section.other_cores = max(0.0, others) / section.seconds
            sections.append(section)
            log(f"scenario {name} took {section.seconds:.0f} s; other processes used"
                f" {section.other_cores:.2f} cores meanwhile")
    finally:
        servers.close()
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    info.load["end"] = list(os.getloadavg())
    info.seconds = time.monotonic() - started
    commit_end = git_commit()
    if commit_end != info.commit:
        # each lazyreg server runs the code on disk when it starts (editable install)
        info.commit += f" at the start, {commit_end} at the end"
        info.notes.append("**The lazyreg code changed during this run**: servers started"
                          " after the change ran the new code. Run again for clean numbers.")
    info.notes += [
        "Every server runs on this machine with the clients: the numbers compare servers"
        " under the same conditions, not absolute capacity.",
        "Other work may run on the machine at the same time: each scenario says how many"
        " cores processes outside the benchmark used meanwhile (machine busy time from"
        " /proc/stat minus the CPU of the benchmark, its children and its registries)."
        " Interleaved repetitions and medians absorb some of it, not all.",
    ]
    png = args.output.with_name(args.output.stem.lower() + ".png")  # RESULTS.md: results.png
    plot: Path | None = png
    try:
        write_plot(png, info, sections)
    except Exception as exc:
        traceback.print_exc()
        errors.append(f"plot failed: {type(exc).__name__}: {exc}")
        plot = None
    write_markdown(args.output, info, sections, plot, errors)
    raw = (BENCH / "out" / "results.json" if args.output == BENCH / "RESULTS.md"
           else args.output.with_name(args.output.stem.lower() + ".json"))
    write_json(raw, info, sections)
    log(f"wrote {args.output}" + (f" and {plot}" if plot else "") +
        f" in {info.seconds / 60:.1f} min")
    for error in errors:
        log(f"ERROR {error}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
