"""The servers of a run, all on loopback and free ports.

- upstreams: CNCF distribution serving seeded fixtures from its own storage
  (the rig's `upstream start` + `upstream seed`), one per seed size, started
  the first time a scenario asks for it and kept for the run;
- the peer: a second distribution in pull-through-cache mode
  (`upstream start --proxy-of URL`) in front of an upstream, fresh per use;
- lazyreg (`tests.rig.start_lazyreg`), fresh per use.

Everything started here is stopped, and its directory removed, by `close()`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

from tests.rig import Lazyreg, Upstream, start_lazyreg, start_upstream
from tests.s3rig import S3Server, start_s3


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far, all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores, /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def peak_rss_kib(pid: int) -> int:
    """VmHWM of a process: the high-water mark of its resident memory."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+)", status)
    if match is None:
        raise RuntimeError(f"no VmHWM for pid {pid}")
    return int(match.group(1))


def rss_kib(pid: int) -> int:
    """VmRSS of a process: its resident memory now."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+)", status)
    if match is None:
        raise RuntimeError(f"no VmRSS for pid {pid}")
    return int(match.group(1))


def private_kib(pid: int) -> int:
    """USS: the resident memory only this process holds (Private_Clean + Private_Dirty of
    /proc/PID/smaps_rollup), what one more worker adds; RSS also counts the shared
    libraries' pages, resident once for all processes."""
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    fields = dict(re.findall(r"^(Private_Clean|Private_Dirty):\s+(\d+)", rollup, re.M))
    if len(fields) != 2:
        raise RuntimeError(f"no private memory figures for pid {pid}")
    return sum(int(v) for v in fields.values())


def reset_peak_rss(pid: int) -> None:
    """Start VmHWM again from the current RSS (Linux >= 4.0: `5` to clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int


def big_layer(upstream: Upstream) -> Blob:
    """The one layer of `fixtures/big:latest` on this upstream."""
    layer = upstream.tag("fixtures/big", "latest")["layers"][0]
    return Blob(layer["digest"], int(layer["size"]))


# The access-log line of a request, as in tests.rig (which counts lines; the log
# grows to tens of MB under the small-request load, so here marks are byte offsets).
_ACCESS = re.compile(r'"(GET|HEAD|POST|PUT|PATCH|DELETE) (\S+) HTTP/[\d.]+" (\d{3})')


def mark(upstream: Upstream) -> int:
    """A position in the upstream's access log: requests after it are `requests_since` it."""
    return upstream.log.stat().st_size if upstream.log.exists() else 0


def requests_since(upstream: Upstream, since: int) -> list[tuple[str, str, int]]:
    """(method, path, status) of every request the upstream logged after `since`."""
    with upstream.log.open("rb") as f:
        f.seek(since)
        text = f.read().decode(errors="replace")
    out = []
    for line in text.splitlines():
        m = _ACCESS.search(line)
        if m and not line.startswith("time="):
            out.append((m.group(1), m.group(2), int(m.group(3))))
    return out


def blob_gets(upstream: Upstream, digest: str, since: int) -> int:
    """GETs of blob `digest` the upstream served after `since`."""
    return sum(1 for method, path, _ in requests_since(upstream, since)
               if method == "GET" and path.endswith(f"/blobs/{digest}"))


def settle(upstream: Upstream, quiet: float = 0.3, timeout: float = 60,
           until: Callable[[], bool] | None = None) -> int:
    """Wait until `until()` holds and the upstream's access log stops growing; a `mark`.

    A registry logs a request once its body is sent, and the distribution proxy
    fetches a blob twice (once for the client, once in the background for its
    storage): this waits for such stragglers.
    """
    deadline = time.monotonic() + timeout
    while until is not None and not until():
        if time.monotonic() > deadline:
            log("warning: the upstream did not log the requests expected; going on")
            break
        time.sleep(0.05)
    last, since = mark(upstream), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = mark(upstream)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


def registry_pid(registry: Upstream) -> int:
    return int(registry.info["registry_pid"])


def mirror(server: Lazyreg, upstream: Upstream, name: str, upstream_name: str,
           **remote: Any) -> dict[str, Any]:
    """An on_demand remote, repository and distribution (base path `name`), synced."""
    task = server.setup_mirror(upstream, name, upstream_name, **remote)
    if task["state"] != "completed":
        raise RuntimeError(f"sync of {upstream_name} into lazyreg failed: {task}")
    return task


class Servers:
    """Starts and owns every process and directory of one benchmark run."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._stack = ExitStack()
        self._upstreams: dict[tuple[int, int], Upstream] = {}
        self._ids = count(1)
        # CPU accounting, to tell how much of the machine other processes took:
        # registries run detached (not our children), so their CPU is read by pid.
        self._registries: dict[Path, int] = {}
        self._stopped_registries_cpu = 0.0
        self._s3: S3Server | None = None

    def our_cpu_seconds(self) -> float:
        """CPU seconds used by this run: this process, its waited-for children, registries."""
        t = os.times()
        total = t.user + t.system + t.children_user + t.children_system
        total += self._stopped_registries_cpu
        for pid in self._registries.values():
            with suppress(OSError, IndexError, ValueError):
                total += cpu_seconds(pid)
        return total

    def _started(self, registry: Upstream) -> Upstream:
        self._registries[registry.dir] = registry_pid(registry)
        return registry

    def upstream(self, big_mib: int = 64, many_tags: int = 200) -> Upstream:
        """A distribution registry seeded with `--big-mib`/`--many-tags`, kept for the run."""
        key = (big_mib, many_tags)
        if key not in self._upstreams:
            workdir = self.root / f"upstream-big{big_mib}-many{many_tags}"
            log(f"starting and seeding an upstream (--big-mib {big_mib}"
                f" --many-tags {many_tags})")
            started = time.monotonic()
            self._stack.callback(shutil.rmtree, workdir, ignore_errors=True)
            self._stack.callback(self._stop_dir, workdir)
            # (a registry's CPU counts from its start, seeding included)
            up = self._started(start_upstream(workdir, seed=["--big-mib", str(big_mib),
                                                             "--many-tags", str(many_tags)]))
            log(f"upstream {up.url} ready in {time.monotonic() - started:.1f} s")
            self._upstreams[key] = up
        return self._upstreams[key]

    def _stop_dir(self, workdir: Path) -> None:
        pid = self._registries.pop(workdir, None)
        if pid is not None:
            with suppress(OSError, IndexError, ValueError):
                self._stopped_registries_cpu += cpu_seconds(pid)
        if (workdir / "registry.pid").exists():
            Upstream(workdir, "", {}).stop()

    @contextmanager
    def proxy(self, upstream: Upstream) -> Iterator[Upstream]:
        """A fresh distribution pull-through cache of `upstream` (empty storage)."""
        workdir = self.root / f"proxy-{next(self._ids)}"
        try:
            yield self._started(start_upstream(workdir, extra=["--proxy-of", upstream.url]))
        finally:
            self._stop_dir(workdir)
            shutil.rmtree(workdir, ignore_errors=True)

    @contextmanager
    def lazyreg(self, env: dict[str, str] | None = None,
                args: list[str] | None = None) -> Iterator[Lazyreg]:
        """A fresh lazyreg server: SQLite and storage in a new data directory.

        `env`: LAZYREG_* settings for it (e.g. LAZYREG_REQUEST_METRICS=false);
        `args`: more `lazyreg serve` options (e.g. --workers 2).
        """
        workdir = self.root / f"lazyreg-{next(self._ids)}"
        server = start_lazyreg(workdir / "data", env=env, args=args)
        try:
            yield server
        finally:
            server.stop()
            shutil.rmtree(workdir, ignore_errors=True)

    def s3(self) -> S3Server:
        """The S3 server (tests/s3rig.py), started once for the run; a bucket per use."""
        if self._s3 is None:
            workdir = self.root / "s3"
            log("starting the S3 server (Swift with its S3 API)")
            started = time.monotonic()
            self._s3 = start_s3(workdir)
            self._stack.callback(self._s3.stop)
            log(f"S3 server {self._s3.endpoint} ready in {time.monotonic() - started:.1f} s")
        return self._s3

    def scratch(self, name: str) -> Path:
        """A new empty directory for client output (removed with the run)."""
        path = self.root / f"{name}-{next(self._ids)}"
        path.mkdir(parents=True)
        return path

    def close(self) -> None:
        try:
            self._stack.close()
        finally:
            self._upstreams.clear()
            self._kill_strays()

    def _kill_strays(self) -> None:
        """Stop any process still naming this run's directory (e.g. a server whose start
        was interrupted): the directory is a fresh mkdtemp, so such processes are ours."""
        marker = str(self.root).encode()
        strays = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with suppress(OSError):
                if marker in (entry / "cmdline").read_bytes():
                    strays.append(int(entry.name))
        for pid in strays:
            with suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while strays and time.monotonic() < deadline:
            strays = [p for p in strays if Path(f"/proc/{p}").exists() and not _zombie(p)]
            time.sleep(0.1)
        for pid in strays:
            with suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if strays:
            log(f"killed {len(strays)} stray process(es) of this run")
