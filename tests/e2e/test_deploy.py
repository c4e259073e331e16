"""Installing and running lazyreg as an operator does (issue 23).

- the wheel, installed into a fresh virtual environment outside the source tree,
  runs `lazyreg serve --port 0`, tells systemd it is ready, and serves a pull;
- the metric names the Grafana dashboard and the alert rules use exist on a live /metrics;
- SIGTERM during a lazy pull: the client gets the whole blob, or a clean error once the
  shutdown timeout cuts it; no staging file stays, the lease is released.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import sysconfig
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import lazyreg
from tests.e2e.expect import layers
from tests.rig import (
    ROOT,
    FaultProxy,
    Lazyreg,
    Upstream,
    dir_blobs,
    run,
    skopeo_copy,
    start_lazyreg,
)

pytestmark = pytest.mark.e2e

SERVING = re.compile(r"lazyreg serving (http://[\d.]+:(\d+))")


@dataclass(frozen=True)
class Installed:
    venv: Path

    @property
    def lazyreg(self) -> Path:
        return self.venv / "bin" / "lazyreg"


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel, built from a copy of the sources, in a fresh venv outside the tree.

    The wheel is installed without its dependencies, which the venv finds in this test
    run's own environment (a .pth file): resolving them from the package index again
    costs ~30 s a run. `pip check` proves that the wheel's declared dependencies are
    what that environment holds, so a dependency missing from pyproject.toml fails here.
    """
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "lazyreg", source / "lazyreg",
                    ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir",
         str(work / "dist"), str(source)])
    [wheel] = (work / "dist").glob("lazyreg-*.whl")
    assert wheel.name == f"lazyreg-{lazyreg.__version__}-py3-none-any.whl"
    venv = work / "venv"
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    run([*pip, "--python", str(python), "install", "--no-deps", str(wheel)])
    [site] = venv.glob("lib/python3*/site-packages")
    (site / "_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    run([*pip, "--python", str(python), "check"])
    return Installed(venv)


@dataclass
class Started:
    server: Lazyreg
    notified: list[str]


def _serve_from(installed: Installed, tmp_path: Path) -> Iterator[Started]:
    data = tmp_path / "data"
    log = tmp_path / "server.log"
    notify = tmp_path / "notify.sock"  # what systemd's NOTIFY_SOCKET would be
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify))
    listener.settimeout(60)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAZYREG_")}
    with log.open("wb") as out:
        proc = subprocess.Popen([str(installed.lazyreg), "serve", "--port", "0",
                                 "--data-dir", str(data)], cwd=tmp_path, stdout=out,
                                stderr=subprocess.STDOUT,
                                env={**env, "NOTIFY_SOCKET": str(notify)})
    try:
        notified = [listener.recv(1024).decode()]  # READY=1 once it serves
        match = SERVING.search(log.read_text())
        assert match, log.read_text()
        yield Started(Lazyreg(match.group(1), data, proc, log), notified)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            listener.settimeout(5)
            notified.append(listener.recv(1024).decode())
        listener.close()


@pytest.fixture(scope="module")
def from_wheel(installed: Installed, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Started]:
    yield from _serve_from(installed, tmp_path_factory.mktemp("from-wheel"))


def test_the_wheel_runs_outside_the_source_tree(installed: Installed, from_wheel: Started,
                                                upstream: Upstream, tmp_path: Path) -> None:
    where = subprocess.run([str(installed.venv / "bin" / "python"), "-c",
                            "import lazyreg; print(lazyreg.__file__)"], cwd=installed.venv,
                           capture_output=True, text=True, check=True, timeout=60).stdout
    assert where.startswith(str(installed.venv)), where
    assert run([str(installed.lazyreg), "--version"]).stdout == (
        f"lazyreg {lazyreg.__version__}\n")
    server = from_wheel.server
    assert from_wheel.notified == ["READY=1"]
    # --port 0: the line names the port it bound, and the server answers there.
    assert not server.url.endswith(":0")
    assert server.ok("GET", "status/")["version"] == lazyreg.__version__
    with urllib.request.urlopen(f"{server.url}/api/v1/openapi.json", timeout=30) as resp:
        assert json.load(resp)["info"]["version"] == lazyreg.__version__
    with urllib.request.urlopen(f"{server.url}/", timeout=30) as resp:
        assert b"lazyreg" in resp.read()
    # Migrations ran from the package: an on_demand mirror, and a real pull through it.
    server.setup_mirror(upstream, "mirror", "fixtures/small")
    v1 = upstream.tag("fixtures/small", "v1")
    skopeo_copy(f"{server.host}/mirror:v1", tmp_path / "v1")
    assert dir_blobs(tmp_path / "v1") == v1["blobs"]
    assert layers(v1) <= server.artifact_digests()


def _metric_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_dashboard_and_alerts_use_only_metrics_that_exist(from_wheel: Started) -> None:
    with urllib.request.urlopen(f"{from_wheel.server.url}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    exported = _metric_names(text)
    deploy = ROOT / "deploy"
    used = set()
    for path in (deploy / "grafana" / "lazyreg.json", deploy / "prometheus" / "alerts.yml"):
        used |= set(re.findall(r"\blazyreg_[a-z_]+\b", path.read_text()))
    assert len(used) >= 12
    assert used <= exported, f"not on /metrics: {sorted(used - exported)}"
    assert re.search(r"^lazyreg_storage_volume_free_bytes [1-9]", text, re.M)
    assert re.search(r'^lazyreg_ready\{check="database"\} 1\.0$', text, re.M)


# ---------------------------------------------------------------- graceful stop

def _staging_files(data_dir: Path) -> list[Path]:
    root = data_dir / "storage" / "tmp"
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def _running_leases(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "lazyreg.db") as db:
        return int(db.execute("SELECT count(*) FROM leases WHERE state = 'running'")
                   .fetchone()[0])


def _pull_until_signalled(url: str, proc: subprocess.Popen[bytes], digest: str) -> str:
    """Read the blob, SIGTERM the server after the first MiB: "whole", or "cut" when the
    connection ended before Content-Length (what every client reports as an error)."""
    h = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            length = int(resp.headers["Content-Length"])
            chunk = resp.read(1024 * 1024)
            proc.send_signal(signal.SIGTERM)
            while chunk:
                h.update(chunk)
                received += len(chunk)
                chunk = resp.read(1024 * 1024)
    except (OSError, http.client.HTTPException):
        return "cut"
    if received < length:
        return "cut"
    assert "sha256:" + h.hexdigest() == digest, "whole length, wrong bytes"
    return "whole"


@pytest.mark.parametrize(("rate_kib", "shutdown_timeout", "outcome"), [
    (16 * 1024, "30", "whole"),  # 64 MiB in ~4 s: drained within the shutdown timeout
    (2 * 1024, "1", "cut"),  # ~32 s: cut after 1 s, the client sees the connection end
])
def test_sigterm_during_a_lazy_pull(upstream: Upstream, tmp_path: Path, rate_kib: int,
                                    shutdown_timeout: str, outcome: str) -> None:
    faults = FaultProxy(upstream.url, tmp_path / "faults.log")
    try:
        server = start_lazyreg(tmp_path / "data",
                               env={"LAZYREG_SHUTDOWN_TIMEOUT": shutdown_timeout})
        try:
            proxied = Upstream(upstream.dir, faults.url, upstream.info, upstream.index)
            server.setup_mirror(proxied, "mirror", "fixtures/big")
            digest = next(iter(layers(upstream.tag("fixtures/big", "latest"))))
            faults.configure(rate_kib=rate_kib, reset=True)
            got = _pull_until_signalled(f"{server.url}/v2/mirror/blobs/{digest}", server.proc,
                                        digest)
            assert server.proc.wait(90) == 0, server.logfile.read_text()[-3000:]
        finally:
            server.stop()
        assert got == outcome
        # Nothing half-done stays: no staging file, no lease held by the stopped process.
        assert _staging_files(server.data_dir) == []
        assert _running_leases(server.data_dir) == 0
        faults.configure(rate_kib=0, reset=True)
        again = start_lazyreg(server.data_dir)
        try:
            log = again.logfile.read_text()
            assert "staging files of dead processes" not in log, log
            with urllib.request.urlopen(f"{again.url}/v2/mirror/blobs/{digest}",
                                        timeout=120) as resp:
                assert "sha256:" + hashlib.sha256(resp.read()).hexdigest() == digest
        finally:
            again.stop()
    finally:
        faults.stop()
