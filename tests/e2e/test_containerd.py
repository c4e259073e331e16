"""Issue 20, finding 8: containerd logs in with `POST /token` (the OAuth2 form) and pulls
a private distribution, with the real containerd (Debian's package) and `ctr --user`.

Before, lazyreg answered the form with 413, containerd does not fall back to GET,
and the pull failed. The daemon runs for the session with a config, root, state
and socket of its own under /tmp (native snapshotter, the CRI plugin off), and is
stopped by its pid. The tests skip only when containerd cannot run here at all
(no binaries, or a daemon that does not come up, e.g. without the privileges it
needs); the skip says why.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.test_access import start_secure
from tests.rig import Lazyreg, Upstream, run

pytestmark = pytest.mark.e2e

START_TIMEOUT = 30.0
CONFIG = """version = 2
root = "{root}/root"
state = "{root}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{root}/c.sock"
[ttrpc]
  address = "{root}/c.ttrpc.sock"
[debug]
  address = "{root}/c.debug.sock"
"""


@dataclass
class Containerd:
    root: Path
    proc: subprocess.Popen[bytes]

    @property
    def socket(self) -> str:
        return str(self.root / "c.sock")

    def ctr(self, *args: str, check: bool = True, timeout: float = 300
            ) -> subprocess.CompletedProcess[str]:
        return run(["ctr", "--address", self.socket, "--namespace", "lazyreg", *args],
                   check=check, timeout=timeout)


@pytest.fixture(scope="session")
def containerd() -> Iterator[Containerd]:
    if not (shutil.which("containerd") and shutil.which("ctr")):
        pytest.skip("containerd cannot run here: no containerd or ctr binary"
                    " (apt-get install containerd)")
    # A short path: a unix socket's path must fit in 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="lzr-ctrd-", dir="/tmp"))
    (root / "config.toml").write_text(CONFIG.format(root=root))
    log = (root / "containerd.log").open("wb")
    proc = subprocess.Popen(["containerd", "--config", str(root / "config.toml")],
                            stdout=log, stderr=subprocess.STDOUT)
    daemon = Containerd(root, proc)
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while True:
            if proc.poll() is not None:
                pytest.skip(f"containerd cannot run here: it exited {proc.returncode}:"
                            f" {(root / 'containerd.log').read_text()[-800:]}")
            if daemon.ctr("version", check=False, timeout=10).returncode == 0:
                break
            if time.monotonic() > deadline:
                pytest.skip(f"containerd cannot run here: no answer on its socket within"
                            f" {START_TIMEOUT:g} s")
            time.sleep(0.2)
        yield daemon
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[Lazyreg]:
    server = start_secure(tmp_path / "data", LAZYREG_ADMIN_PASSWORD="ctr-admin-password")
    yield server
    server.stop()


def test_ctr_user_pulls_a_private_distribution(containerd: Containerd, secure: Lazyreg,
                                               upstream: Upstream) -> None:
    secure.ok("POST", "users/", {"username": "reader", "password": "reader-pw-1"})
    secure.ok("POST", "users/", {"username": "stranger", "password": "stranger-pw-1"})
    assert secure.setup_mirror(upstream, "pub", "fixtures/small")["state"] == "completed"
    secure.ok("POST", "distributions/", {"name": "priv", "base_path": "team/priv",
                                         "repository": "pub", "private": True,
                                         "readers": ["reader"]})
    ref = f"{secure.host}/team/priv:v1"
    since = len(secure.logfile.read_text().splitlines())

    pulled = containerd.ctr("image", "pull", "--plain-http", "--snapshotter", "native",
                            "--user", "reader:reader-pw-1", ref)
    assert "done" in pulled.stdout or "unpacking" in pulled.stdout, pulled.stdout[-2000:]
    listed = containerd.ctr("image", "ls", "-q").stdout.split()
    assert ref in listed
    # containerd asked for its token with the OAuth2 form, not GET.
    access = [line for line in secure.logfile.read_text().splitlines()[since:]
              if "/token" in line]
    assert any("POST" in line and " 200" in line for line in access), access
    containerd.ctr("image", "rm", ref)

    for user in ("stranger:stranger-pw-1", "reader:wrong-password"):
        refused = containerd.ctr("image", "pull", "--plain-http", "--snapshotter", "native",
                                 "--user", user, ref, check=False)
        assert refused.returncode != 0, refused.stdout[-1000:]
    anonymous = containerd.ctr("image", "pull", "--plain-http", "--snapshotter", "native",
                               ref, check=False)
    assert anonymous.returncode != 0
    assert ref not in containerd.ctr("image", "ls", "-q").stdout.split()
