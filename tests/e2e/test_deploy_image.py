"""The container image: built from deploy/Containerfile with podman, run, pulled through.

Opt-in (LAZYREG_TEST_IMAGE=1): it takes about two minutes on this 2-core machine, more
than the suite's budget allows. No public registry is reachable here, so the base image
is a Debian bookworm root filesystem with python3 made by mmdebstrap from the Debian
mirror (~95 s, cached in ~/.cache/lazyreg-tests), imported with `podman import`, and
given to the build as BASE; the wheel's dependencies come from the package index as
wheels in the build context (PIP_ARGS="--no-index --find-links /dist").

This machine's sandbox needs three podman options that an ordinary host does not:
runc rather than crun (crun refuses cgroups v1/v2 hybrid mode), ulimits at or under
the current hard limits (no CAP_SYS_RESOURCE to raise them), and the host network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.expect import layers
from tests.rig import ROOT, Lazyreg, Upstream, dir_blobs, free_port, run, skopeo_copy

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.environ.get("LAZYREG_TEST_IMAGE") != "1",
                       reason="builds a container image (~2 min): set LAZYREG_TEST_IMAGE=1"),
]

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lazyreg-tests"
BASE_TAR = CACHE / "bookworm-python3-rootfs.tar"
SANDBOX = ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
           "--network", "host"]


def _base_rootfs() -> Path:
    if BASE_TAR.exists():
        return BASE_TAR
    if shutil.which("mmdebstrap") is None:
        pytest.fail("mmdebstrap is not installed (apt-get install mmdebstrap)")
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = BASE_TAR.with_suffix(".partial")
    run(["mmdebstrap", "--variant=minbase", "--include=python3,python3-venv",
         "--mode=root", "--format=tar", "bookworm", str(partial)], timeout=600)
    partial.rename(BASE_TAR)
    return BASE_TAR


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[list[str]]:
    runroot = tempfile.mkdtemp(prefix="lzr-", dir="/tmp")  # podman wants a short path
    cmd = ["podman", "--storage-driver", "overlay", "--root", str(tmp_path / "storage"),
           "--runroot", runroot]
    yield cmd
    subprocess.run([*cmd, "system", "reset", "--force"], capture_output=True, timeout=120,
                   check=False)
    shutil.rmtree(runroot, ignore_errors=True)


def _context(tmp_path: Path) -> Path:
    """deploy/Containerfile's build context: dist/ with the wheel and its dependencies."""
    ctx = tmp_path / "context"
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "lazyreg", source / "lazyreg",
                    ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(ctx / "dist"),
         str(source)])
    [wheel] = (ctx / "dist").glob("lazyreg-*.whl")
    run([*pip, "download", "--only-binary", ":all:", "--dest", str(ctx / "dist"), str(wheel)])
    return ctx


def _wait_ready(url: str, proc_check: list[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.5)
    logs = subprocess.run(proc_check, capture_output=True, text=True, check=False).stdout
    raise AssertionError(f"the container did not get ready in {timeout}s:\n{logs}")


def test_image_builds_runs_as_non_root_and_serves_a_pull(
        podman: list[str], upstream: Upstream, tmp_path: Path) -> None:
    base = _base_rootfs()
    ctx = _context(tmp_path)
    run([*podman, "import", "--quiet", str(base), "localhost/lazyreg-test-base"], timeout=300)
    started = time.monotonic()
    run([*podman, "build", "--layers=false", "--format", "docker", *SANDBOX[:6],
         "--network", "none", "--build-arg", "BASE=localhost/lazyreg-test-base",
         "--build-arg", "PIP_ARGS=--no-index --find-links /dist",
         "-f", str(ROOT / "deploy" / "Containerfile"), "-t", "localhost/lazyreg:test", str(ctx)],
        timeout=600)
    built = time.monotonic() - started
    port = free_port()
    run([*podman, "volume", "create", "lazyreg-state"])
    run([*podman, "run", "--detach", "--name", "lazyreg", *SANDBOX,
         "-e", f"LAZYREG_PORT={port}", "-v", "lazyreg-state:/var/lib/lazyreg",
         "localhost/lazyreg:test"])
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url, [*podman, "logs", "lazyreg"])
    assert run([*podman, "exec", "lazyreg", "id", "-u"]).stdout.strip() == "10001"
    health = subprocess.run([*podman, "healthcheck", "run", "lazyreg"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert health.returncode == 0, health.stdout + health.stderr
    # The API helpers of tests/rig.py; the process is the container, not one of ours.
    placeholder = subprocess.Popen(["true"])
    placeholder.wait()
    server = Lazyreg(url, tmp_path, placeholder, tmp_path / "unused.log")
    server.setup_mirror(upstream, "mirror", "fixtures/small")
    v1 = upstream.tag("fixtures/small", "v1")
    skopeo_copy(f"127.0.0.1:{port}/mirror:v1", tmp_path / "v1")
    assert dir_blobs(tmp_path / "v1") == v1["blobs"]
    assert layers(v1) <= server.artifact_digests()
    logs = run([*podman, "logs", "lazyreg"]).stdout
    assert f"lazyreg serving http://127.0.0.1:{port}" in logs  # loopback unless told
    stop_started = time.monotonic()
    run([*podman, "stop", "--time", "30", "lazyreg"], timeout=60)
    assert time.monotonic() - stop_started < 25  # SIGTERM stopped it, not the SIGKILL
    print(f"\nimage built in {built:.0f}s")
