"""Helpers to run the real parts: the upstream rig from ../shared, lazyreg itself, skopeo, podman.

Used by the end-to-end tests and by the benchmarks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LAZYREG_SHARED", ROOT.parent / "shared")).resolve()
UPSTREAM = SHARED / "upstream" / "upstream"
LAZYREG_BIN = Path(sys.executable).parent / "lazyreg"
USER, PASSWORD = "testuser", "testpassword"

_ACCESS_RE = re.compile(r'"(GET|HEAD|POST|PUT|PATCH|DELETE) (\S+) HTTP/[\d.]+" (\d{3})')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(cmd: list[str], timeout: float = 300, check: bool = True,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n"
                             f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc


# ---------------------------------------------------------------- the upstream rig

@dataclass
class Upstream:
    dir: Path
    url: str
    info: dict[str, Any]
    index: dict[str, Any] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]

    @property
    def log(self) -> Path:
        return self.dir / "registry.log"

    def requests(self, since: int = 0) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request the registry served, from its access log."""
        out = []
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        for line in text.splitlines()[since:]:
            m = _ACCESS_RE.search(line)
            if m and not line.startswith("time="):
                out.append((m.group(1), m.group(2), int(m.group(3))))
        return out

    def mark(self) -> int:
        return len(self.log.read_text(errors="replace").splitlines()) if self.log.exists() else 0

    def count(self, method: str, pattern: str, since: int = 0) -> int:
        rx = re.compile(pattern)
        return sum(1 for m, p, _ in self.requests(since) if m == method and rx.search(p))

    def tag(self, repo: str, tag: str) -> dict[str, Any]:
        return self.index["repos"][repo][tag]

    def stop(self) -> None:
        run([str(UPSTREAM), "stop", "--dir", str(self.dir)], check=False)


def start_upstream(workdir: Path, *, auth: str = "none", seed: list[str] | None = None,
                   extra: list[str] | None = None) -> Upstream:
    workdir.mkdir(parents=True, exist_ok=True)
    for _ in range(5):
        port = free_port()
        proc = run([str(UPSTREAM), "start", "--dir", str(workdir), "--port", str(port),
                    "--auth", auth, "--json", *(extra or [])], check=False, timeout=120)
        if proc.returncode == 0:
            break
    else:
        raise AssertionError(f"upstream did not start: {proc.stderr}")
    info = json.loads(proc.stdout)
    up = Upstream(workdir, info["url"], info)
    if seed is not None:
        run([str(UPSTREAM), "seed", "--url", up.url, "--dir", str(workdir), *seed], timeout=300)
        up.index = json.loads((workdir / "manifest-index.json").read_text())
    return up


class FaultProxy:
    """`upstream faults`: a fault-injecting, counting proxy in front of a registry."""

    def __init__(self, target: str, logfile: Path) -> None:
        self._out = logfile.open("w")
        self.proc = subprocess.Popen([str(UPSTREAM), "faults", "--target", target, "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=self._out, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise AssertionError(f"fault proxy did not start: {self.url!r}")

    def configure(self, **config: Any) -> dict[str, Any]:
        return http_json("POST", self.url + "/__faults__", config)[1]

    def counters(self) -> dict[str, int]:
        return http_json("GET", self.url + "/__faults__")[1]["counters"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._out.close()


# ---------------------------------------------------------------- lazyreg

def http_json(method: str, url: str, body: Any = None,
              headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode(errors="replace")


class HasUrl(Protocol):
    """An upstream of the tests' own (tests/hostile.py), reachable at `url`."""

    url: str


@dataclass
class Lazyreg:
    url: str
    data_dir: Path
    proc: subprocess.Popen[bytes]
    logfile: Path
    # Sent with every API request (an Authorization header, when auth is on).
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return http_json(method, f"{self.url}/api/v1/{path.lstrip('/')}", body, self.headers)

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, data = self.api(method, path, body)
        if status >= 300:
            raise AssertionError(f"{method} {path} -> {status}: {data}")
        return data

    def wait_task(self, task: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = self.ok("GET", f"tasks/{task['id']}/")
            if current["state"] in ("completed", "failed", "canceled"):
                return current
            time.sleep(0.1)
        raise AssertionError(f"task {task['id']} did not finish in {timeout}s")

    def verify(self) -> dict[str, Any]:
        """`lazyreg check --verify`: the verify task, followed to its end; `ok` when it
        found no problem (its warnings list them)."""
        task = self.wait_task(self.ok("POST", "check/verify/", {}))
        assert task["state"] == "completed", task
        return {"ok": not task["warnings"], "problems": task["warnings"], "task": task}

    def setup_mirror(self, upstream: Upstream | HasUrl, name: str, upstream_name: str,
                     policy: str = "on_demand", **remote: Any) -> dict[str, Any]:
        """Remote + repository + distribution (base path `name`), then sync; the finished task."""
        self.ok("POST", "remotes/", {"name": name, "url": upstream.url,
                                     "upstream_name": upstream_name, "policy": policy, **remote})
        self.ok("POST", "repositories/", {"name": name})
        self.ok("POST", "distributions/", {"name": name, "base_path": name, "repository": name})
        return self.sync(name, name)

    def sync(self, repository: str, remote: str, mirror: bool = False) -> dict[str, Any]:
        task = self.ok("POST", f"repositories/{repository}/sync/",
                       {"remote": remote, "mirror": mirror})
        return self.wait_task(task)

    def artifacts(self) -> dict[str, Any]:
        return self.ok("GET", "artifacts/?limit=1000")

    def artifact_digests(self) -> set[str]:
        return {a["digest"] for a in self.artifacts()["results"]}

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]

    def peak_rss_kib(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def start_lazyreg(data_dir: Path, *, database_url: str | None = None, port: int | None = None,
                  env: dict[str, str] | None = None, prefix: list[str] | None = None,
                  args: list[str] | None = None) -> Lazyreg:
    """`prefix`: a command that execs the server (e.g. in a namespace), keeping its pid;
    `args`: more options of `lazyreg serve` (e.g. `--workers 2`)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    cmd = [*(prefix or []), str(LAZYREG_BIN), "serve", "--host", "127.0.0.1", "--port", str(port),
           "--data-dir", str(data_dir)]
    if database_url:
        cmd += ["--database-url", database_url]
    cmd += args or []
    logfile = data_dir.parent / f"{data_dir.name}-server-{port}.log"
    with logfile.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "LAZYREG_UPSTREAM_BACKOFF": "0.1",
                                     **(env or {})})
    server = Lazyreg(f"http://127.0.0.1:{port}", data_dir, proc, logfile)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"lazyreg exited {proc.returncode}:\n{logfile.read_text()}")
        try:
            if server.api("GET", "status/")[0] in (200, 401):  # 401: auth on, it answers
                return server
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.1)
    server.kill()
    raise AssertionError(f"lazyreg did not answer in 30s:\n{logfile.read_text()}")


# ---------------------------------------------------------------- clients

def skopeo_copy(src: str, dest: Path, *args: str, check: bool = True,
                timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return run(["skopeo", "copy", "--src-tls-verify=false", *args, f"docker://{src}",
                f"dir:{dest}"], check=check, timeout=timeout)


def podman_pull(ref: str, root: Path, *args: str, check: bool = True
                ) -> subprocess.CompletedProcess[str]:
    # podman refuses a runroot path longer than 50 characters: pytest's are longer.
    runroot = tempfile.mkdtemp(prefix="lzr-", dir="/tmp")
    try:
        return run(["podman", "--storage-driver", "vfs", "--root", str(root / "root"),
                    "--runroot", runroot, "pull", "--tls-verify=false", *args, ref],
                   check=check, timeout=300)
    finally:
        shutil.rmtree(runroot, ignore_errors=True)


def dir_blobs(path: Path) -> dict[str, int]:
    """{digest: size} of the blobs a `skopeo copy … dir:` wrote."""
    return {"sha256:" + f.name: f.stat().st_size for f in path.iterdir() if len(f.name) == 64}
