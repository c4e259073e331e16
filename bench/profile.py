"""`python -m bench.profile {lazy,cached,small,sync} [...]`: where lazyreg's time goes.

Runs one scenario's load against lazyreg on loopback while py-spy samples the
server process (`.venv/bin/pip install py-spy`; it needs ptrace, i.e. root or
CAP_SYS_PTRACE), merges the samples of every repetition, and prints the
functions with the most samples: inclusive ("in this function or below") and
self ("in this function's own code"), as percentages of all non-idle samples
of all the server's threads. `--gil` keeps only samples of the thread holding
the GIL (Python-level CPU); `--keep DIR` keeps the collapsed stacks (for
speedscope.app or flamegraph.pl).

    python -m bench.profile lazy --mib 64 --reps 5
    python -m bench.profile lazy-small --reps 1      # the fixed cost of a lazy pull
    python -m bench.profile small --seconds 10
    python -m bench.profile sync --tags 200
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.clients import MANIFEST_ACCEPT, pull_blobs, request_rate
from bench.scenarios.sync import create_mirror, timed_sync
from bench.servers import Servers, big_layer, log, mirror
from tests.rig import Lazyreg

PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")


class Samples:
    """Collapsed stacks from py-spy's raw format, merged over several recordings."""

    def __init__(self) -> None:
        self.stacks: Counter[tuple[str, ...]] = Counter()
        self.threads: Counter[str] = Counter()  # samples per kind of thread
        self.cpu = {"user": 0.0, "system": 0.0, "wall": 0.0}

    def add_file(self, path: Path) -> None:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            raw = [f for f in stack.split(";") if f]
            if raw and raw[0].startswith("thread ("):
                raw = raw[1:]  # py-spy --threads: the first frame names the thread
            frames = tuple(_name(f) for f in raw)
            if frames and frames[-1].endswith("thread.py:_worker"):
                continue  # an executor thread waiting for work: idle
            self.threads["worker threads" if any("thread.py:_worker" in f for f in frames)
                         else "other threads" if any("threading.py:" in f for f in frames)
                         else "event loop thread"] += int(count)
            self.stacks[frames] += int(count)

    @property
    def total(self) -> int:
        return sum(self.stacks.values())

    def inclusive(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for frames, n in self.stacks.items():
            for name in set(frames):
                out[name] += n
        return out

    def self_time(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for frames, n in self.stacks.items():
            if frames:
                out[frames[-1]] += n
        return out


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far, all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _name(frame: str) -> str:
    """`func (path/to/file.py:12)` -> `file.py-relative:func`, shortened for reading."""
    m = _FRAME.match(frame.strip())
    if m is None:
        return frame.strip()
    path = m.group("file")
    for marker in ("/lazyreg/", "/site-packages/", "/lib/python3.11/"):
        if marker in path:
            path = ("lazyreg/" if marker == "/lazyreg/" else "") + path.split(marker, 1)[1]
            break
    return f"{path}:{m.group('func')}"


@contextmanager
def recording(server: Lazyreg, out: Path, samples: Samples, *, rate: int, gil: bool,
              keep: Path | None) -> Iterator[None]:
    cmd = [PY_SPY, "record", "--pid", str(server.proc.pid), "--rate", str(rate),
           "--format", "raw", "--output", str(out), "--nonblocking", "--threads"]
    if gil:
        cmd.append("--gil")
    spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)  # attach
    before, started = cpu_split(server.proc.pid), time.monotonic()
    try:
        yield
    finally:
        after = cpu_split(server.proc.pid)
        samples.cpu["user"] += after[0] - before[0]
        samples.cpu["system"] += after[1] - before[1]
        samples.cpu["wall"] += time.monotonic() - started
        spy.send_signal(signal.SIGINT)
        try:
            _, err = spy.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            _, err = spy.communicate()
        if not out.exists():
            raise RuntimeError(f"py-spy wrote nothing: {err}")
        if keep is not None:  # collapsed stacks: speedscope.app or flamegraph.pl read them
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(out, keep / out.name)


def profile(args: argparse.Namespace) -> Samples:
    samples = Samples()
    root = Path(tempfile.mkdtemp(prefix="lazyreg-profile-"))
    servers = Servers(root)
    try:
        for rep in range(args.reps):
            out = root / f"{args.scenario}-{rep}.txt"
            if args.scenario == "lazy":
                up = servers.upstream(big_mib=args.mib, many_tags=200 if args.mib == 64 else 0)
                blob = big_layer(up)
                with servers.lazyreg() as lz:
                    mirror(lz, up, "big", "fixtures/big")
                    with recording(lz, out, samples, rate=args.rate, gil=args.gil, keep=args.keep):
                        batch = pull_blobs(f"{lz.url}/v2/big/blobs/{blob.digest}", blob.digest,
                                           blob.size)
                    log(f"lazy pull {batch.wall:.3f} s ({batch.mb_per_s:.0f} MB/s)")
            elif args.scenario == "lazy-small":
                # per-blob overhead: the unique small layer of each fixtures/many tag
                up = servers.upstream()
                tags = up.index["repos"]["fixtures/many"]
                layers = [t["layers"][-1] for t in tags.values()][:args.tags]
                with servers.lazyreg() as lz:
                    mirror(lz, up, "many", "fixtures/many")
                    started = time.perf_counter()
                    with recording(lz, out, samples, rate=args.rate, gil=args.gil,
                                   keep=args.keep):
                        for layer in layers:
                            pull_blobs(f"{lz.url}/v2/many/blobs/{layer['digest']}",
                                       layer["digest"], layer["size"])
                    took = (time.perf_counter() - started) / len(layers)
                    log(f"{len(layers)} lazy pulls of small blobs: {took * 1000:.1f} ms each")
            elif args.scenario == "cached":
                up = servers.upstream(big_mib=args.mib, many_tags=200 if args.mib == 64 else 0)
                blob = big_layer(up)
                with servers.lazyreg() as lz:
                    mirror(lz, up, "big", "fixtures/big")
                    url = f"{lz.url}/v2/big/blobs/{blob.digest}"
                    pull_blobs(url, blob.digest, blob.size)
                    with recording(lz, out, samples, rate=args.rate, gil=args.gil, keep=args.keep):
                        batch = pull_blobs(url, blob.digest, blob.size, args.concurrency)
                    log(f"cached pull {batch.mb_per_s:.0f} MB/s")
            elif args.scenario == "small":
                up = servers.upstream()
                layer = up.tag("fixtures/small", "v1")["layers"][0]
                with servers.lazyreg() as lz:
                    mirror(lz, up, "small", "fixtures/small")
                    base = f"{lz.url}/v2/small"
                    pull_blobs(f"{base}/blobs/{layer['digest']}", layer["digest"], layer["size"])
                    method, path, headers = (
                        ("HEAD", f"/blobs/{layer['digest']}", {}) if args.head
                        else ("GET", "/manifests/v1", {"Accept": MANIFEST_ACCEPT}))
                    with recording(lz, out, samples, rate=args.rate, gil=args.gil, keep=args.keep):
                        rate = request_rate(base + path, method, headers, connections=16,
                                            duration=args.seconds)
                    log(f"{method} {path}: {rate:.0f} requests/s")
            elif args.scenario == "sync":
                up = servers.upstream() if args.tags == 200 else servers.upstream(0, args.tags)
                with servers.lazyreg() as lz:
                    create_mirror(lz, up, "many", "fixtures/many")
                    with recording(lz, out, samples, rate=args.rate, gil=args.gil, keep=args.keep):
                        seconds, _ = timed_sync(lz, "many")
                    log(f"sync of {args.tags} tags: {seconds:.2f} s")
            samples.add_file(out)
    finally:
        servers.close()
        shutil.rmtree(root, ignore_errors=True)
    return samples


def print_top(samples: Samples, top: int) -> None:
    total = samples.total or 1
    cpu = samples.cpu
    print(f"\nserver CPU while loaded: {cpu['user']:.2f} s user + {cpu['system']:.2f} s system"
          f" in {cpu['wall']:.2f} s wall (py-spy attached, --nonblocking)")
    print(f"{samples.total} samples (non-idle, all threads): " + ", ".join(
        f"{k} {100 * n / total:.0f}%" for k, n in samples.threads.most_common()) + "\n")
    print("inclusive, lazyreg code:")
    for name, n in samples.inclusive().most_common():
        if name.startswith("lazyreg/"):
            print(f"  {100 * n / total:5.1f}%  {name}")
            top -= 1
            if top <= 0:
                break
    print("\nself (leaf frames), any code:")
    for name, n in samples.self_time().most_common(25):
        print(f"  {100 * n / total:5.1f}%  {name}")
    print("\nhottest stacks:")
    for frames, n in samples.stacks.most_common(12):
        tail = " > ".join(f.rsplit(":", 1)[-1] for f in frames[-6:])
        print(f"  {100 * n / total:5.1f}%  {tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=["lazy", "lazy-small", "cached", "small", "sync"])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--mib", type=int, default=64, help="blob size (lazy, cached)")
    parser.add_argument("--concurrency", type=int, default=1, help="clients (cached)")
    parser.add_argument("--head", action="store_true", help="blob HEAD instead of manifest GET")
    parser.add_argument("--seconds", type=float, default=5.0, help="load duration (small)")
    parser.add_argument("--tags", type=int, default=200,
                        help="tags to sync (sync), small blobs to pull (lazy-small)")
    parser.add_argument("--rate", type=int, default=500, help="samples per second")
    parser.add_argument("--gil", action="store_true", help="only the thread holding the GIL")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep each recording's collapsed stacks in this directory")
    args = parser.parse_args(argv)
    if not Path(PY_SPY).exists():
        print("py-spy is not installed: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    print_top(profile(args), args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
