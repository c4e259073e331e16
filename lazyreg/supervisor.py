"""`lazyreg serve --workers N`: N server processes answering on one listening socket.

The supervisor reserves the port (a socket bound with SO_REUSEPORT, never
listening: it also fixes the port when `--port 0` asked for any), then starts
each worker (`lazyreg.serve.main`, the server without the command line:
its settings come as LAZYREG_* variables, the port in `LAZYREG_WORKER_PORT`).
Each worker listens on that port with SO_REUSEPORT, and the kernel spreads
new connections evenly over the listening workers (a shared listening socket
would not: an asyncio server accepts every connection waiting when it wakes, so
one worker took all 16 connections of a load generator). A worker that dies
leaves the group at once; only connections queued to it are lost.
Workers share the database and storage exactly as separate servers do; the
supervisor itself imports none of the server and holds no state.

- Start-up: one worker at a time, each after the previous said it is ready
  (a byte on the pipe named in `LAZYREG_READY_FD`), so that migrations and
  start-up repairs run once, not N times at once.
- A worker that exits while the server runs is started again: at once after a
  worker that ran for a while, after a doubling delay (RESTART_DELAY up to
  MAX_RESTART_DELAY) when it keeps dying young.
- Stop (SIGTERM, SIGINT): every worker gets SIGTERM and drains its requests in
  flight (up to `shutdown_timeout`, see `lazyreg.serve`); those still running
  after `grace` seconds are killed. A second signal kills at once.
- Metrics: `PROMETHEUS_MULTIPROC_DIR` names a private directory made at start
  and removed at exit, in which prometheus-client's multiprocess mode keeps each
  worker's figures; `/metrics`, whichever worker answers it, sums them. The live
  gauges of a dead worker are dropped (as `multiprocess.mark_process_dead` does).
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

WORKER_PORT = "LAZYREG_WORKER_PORT"
READY_FD = "LAZYREG_READY_FD"
METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"
# What a worker runs: the server, its settings read from LAZYREG_* variables (also what
# `lazyreg serve` becomes with one process).
SERVER = "from lazyreg.serve import main; main()"
OWN_VARIABLES = (WORKER_PORT, READY_FD)  # what the supervisor tells its workers
READY_TIMEOUT = 120.0  # seconds a worker may take to start (migrations included)
YOUNG = 10.0  # seconds: a worker that dies younger than this is crash-looping
RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0


class SupervisorError(Exception):
    """The workers could not be started; the message says why."""


def is_worker() -> bool:
    return WORKER_PORT in os.environ


def worker_port() -> int | None:
    """The port a worker listens on (with SO_REUSEPORT), or None outside a supervisor."""
    port = os.environ.get(WORKER_PORT)
    return int(port) if port else None


def say_ready() -> None:
    """Tell the supervisor this worker serves (once; a no-op outside a supervisor)."""
    fd = os.environ.pop(READY_FD, None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.write(int(fd), b"1")
            os.close(int(fd))


def worker_count(workers: str) -> int:
    """`auto`: the cores this process may run on; else the number given."""
    if workers == "auto":
        return len(os.sched_getaffinity(0))
    return int(workers)


def reserve(host: str, port: int) -> socket.socket:
    """A socket bound to `host:port` with SO_REUSEPORT, not listening: the port is ours."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SupervisorError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


@dataclass
class Worker:
    slot: int
    proc: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)


class Supervisor:
    def __init__(self, count: int, sock: socket.socket, settings_env: dict[str, str],
                 grace: float) -> None:
        self.count = count
        self.grace = grace  # seconds workers may take to stop before they are killed
        self.sock = sock
        self.settings_env = settings_env
        self.metrics_dir = Path(tempfile.mkdtemp(prefix="lazyreg-metrics-"))
        self.workers: dict[int, Worker] = {}  # pid -> worker
        self.delays = [0.0] * count  # the next restart delay of each slot
        self.pending: list[tuple[float, int]] = []  # (when, slot) of restarts to come
        self.stopping = False
        self.signals = 0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)

    # ------------------------------------------------------------ workers

    def _spawn(self, slot: int) -> Worker:
        ready_r, ready_w = os.pipe()
        env = {**os.environ, **self.settings_env, WORKER_PORT: str(self.sock.getsockname()[1]),
               READY_FD: str(ready_w), METRICS_DIR: str(self.metrics_dir)}
        env.pop("NOTIFY_SOCKET", None)  # systemd hears from the supervisor, its main process
        cmd = [sys.executable, "-c", SERVER]
        try:
            proc = subprocess.Popen(cmd, env=env, pass_fds=(ready_w,))
        finally:
            os.close(ready_w)
        worker = Worker(slot, proc)
        self.workers[proc.pid] = worker
        try:
            self._wait_ready(worker, ready_r)
        finally:
            os.close(ready_r)
        return worker

    def _wait_ready(self, worker: Worker, ready_r: int) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SupervisorError(f"worker {worker.slot} did not start in"
                                      f" {READY_TIMEOUT:g}s")
            readable, _, _ = select.select([ready_r, self._wake_r], [], [], left)
            if ready_r in readable:
                if os.read(ready_r, 1):
                    return
                code = worker.proc.wait()  # the pipe closed: the worker is gone
                self.workers.pop(worker.proc.pid, None)
                raise SupervisorError(f"worker {worker.slot} exited with {code} at start-up")
            self._drain_wakeups()

    def _reap(self) -> None:
        for pid, worker in list(self.workers.items()):
            code = worker.proc.poll()
            if code is None:
                continue
            del self.workers[pid]
            self._forget_live_gauges(pid)
            if self.stopping:
                continue
            lived = time.monotonic() - worker.started
            slot = worker.slot
            self.delays[slot] = (0.0 if lived >= YOUNG else
                                 min(max(self.delays[slot] * 2, RESTART_DELAY),
                                     MAX_RESTART_DELAY))
            print(f"lazyreg: worker {slot} (pid {pid}) exited with {code} after {lived:.1f}s;"
                  f" starting it again in {self.delays[slot]:g}s", file=sys.stderr, flush=True)
            self.pending.append((time.monotonic() + self.delays[slot], slot))

    def _forget_live_gauges(self, pid: int) -> None:
        for path in self.metrics_dir.glob(f"gauge_live*_{pid}.db"):
            path.unlink(missing_ok=True)

    # ------------------------------------------------------------ signals

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGCHLD:
            return  # the wakeup fd does the work
        self.signals += 1
        self.stopping = True
        sig = signal.SIGTERM if self.signals == 1 else signal.SIGKILL
        for worker in list(self.workers.values()):
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(sig)

    def _drain_wakeups(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 512):
                pass

    # ------------------------------------------------------------ the loop

    def run(self, on_ready: Callable[[], None] = lambda: None) -> int:
        os.set_blocking(self._wake_r, False)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(signum, self._on_signal)
        try:
            for slot in range(self.count):
                if self.stopping:
                    break
                self._spawn(slot)
            if not self.stopping:
                on_ready()  # every worker serves
            while self.workers or (self.pending and not self.stopping):
                self._reap()
                now = time.monotonic()
                for due, slot in sorted(self.pending):
                    if due <= now and not self.stopping:
                        self.pending.remove((due, slot))
                        try:
                            self._spawn(slot)
                        except SupervisorError as exc:
                            print(f"lazyreg: {exc}", file=sys.stderr, flush=True)
                            self.pending.append((time.monotonic() + MAX_RESTART_DELAY, slot))
                if self.stopping and self.workers:
                    self._wait_stopped()
                    continue
                timeout = min((d for d, _ in self.pending), default=now + 60) - now
                select.select([self._wake_r], [], [], max(timeout, 0.0))
                self._drain_wakeups()
            return 0
        finally:
            self._kill_all()
            self.sock.close()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _wait_stopped(self) -> None:
        deadline = time.monotonic() + self.grace
        while self.workers and time.monotonic() < deadline:
            select.select([self._wake_r], [], [], 0.5)
            self._drain_wakeups()
            self._reap()
        self._kill_all()

    def _kill_all(self) -> None:
        for worker in list(self.workers.values()):
            if worker.proc.poll() is None:
                worker.proc.kill()
            worker.proc.wait()
        self.workers.clear()


def supervise(count: int, host: str, port: int, settings_env: dict[str, str],
              banner: str, grace: float, on_ready: Callable[[], None] = lambda: None) -> int:
    """Run `count` workers on `host:port` until stopped; the exit code.

    `settings_env`: the workers' settings, as LAZYREG_* variables.
    `banner` is printed once the first worker serves, with `{url}` replaced by
    the address bound (which names the port chosen when `port` is 0).
    """
    sock = reserve(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    supervisor = Supervisor(count, sock, settings_env, grace)
    print(banner.format(port=bound, host=shown), flush=True)
    return supervisor.run(on_ready)
