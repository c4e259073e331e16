"""Access control with the real clients: skopeo and podman against --auth on.

Private distributions behind the token protocol (skopeo --src-creds, podman
login + pull), public ones still anonymous, the refusal to serve the network
with auth off, and secrets that appear nowhere: not in API answers, task
errors, logs, /v2 error bodies or the database file.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.expect import layers
from tests.rig import (
    LAZYREG_BIN,
    PASSWORD,
    USER,
    Lazyreg,
    Upstream,
    dir_blobs,
    free_port,
    http_json,
    podman_pull,
    run,
    skopeo_copy,
    start_lazyreg,
)

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "e2e-admin-password"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def start_secure(data_dir: Path, **env: str) -> Lazyreg:
    server = start_lazyreg(data_dir, env={"LAZYREG_AUTH": "on", **env})
    server.headers = basic("admin", env.get("LAZYREG_ADMIN_PASSWORD", ADMIN_PASSWORD))
    return server


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[Lazyreg]:
    server = start_secure(tmp_path / "data", LAZYREG_ADMIN_PASSWORD=ADMIN_PASSWORD)
    yield server
    server.stop()


def podman(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    runroot = tempfile.mkdtemp(prefix="lzr-", dir="/tmp")
    try:
        return run(["podman", "--storage-driver", "vfs", "--root", str(root / "root"),
                    "--runroot", runroot, *args], check=check, timeout=300)
    finally:
        shutil.rmtree(runroot, ignore_errors=True)


def test_private_and_public_distributions_with_skopeo_and_podman(
        secure: Lazyreg, upstream: Upstream, tmp_path: Path) -> None:
    secure.ok("POST", "users/", {"username": "reader", "password": "reader-pw-1"})
    secure.ok("POST", "users/", {"username": "stranger", "password": "stranger-pw-1"})
    assert secure.setup_mirror(upstream, "pub", "fixtures/small")["state"] == "completed"
    secure.ok("POST", "distributions/", {"name": "priv", "base_path": "team/priv",
                                         "repository": "pub", "private": True,
                                         "readers": ["reader"]})
    expected = upstream.tag("fixtures/small", "v1")["blobs"]
    priv, pub = f"{secure.host}/team/priv:v1", f"{secure.host}/pub:v1"

    denied = skopeo_copy(priv, tmp_path / "anon", check=False)
    assert denied.returncode != 0 and "unauthorized" in denied.stderr.lower()
    denied = skopeo_copy(priv, tmp_path / "stranger", "--src-creds", "stranger:stranger-pw-1",
                         check=False)
    assert denied.returncode != 0
    assert not (tmp_path / "stranger").exists() or not dir_blobs(tmp_path / "stranger")
    skopeo_copy(priv, tmp_path / "reader", "--src-creds", "reader:reader-pw-1")
    assert dir_blobs(tmp_path / "reader") == expected
    skopeo_copy(pub, tmp_path / "public")  # no credentials at all
    assert dir_blobs(tmp_path / "public") == expected

    authfile = tmp_path / "auth" / "auth.json"
    # Each podman run gets a root of its own: a root remembers its runroot.
    bad = podman(tmp_path / "login-bad", "login", "--tls-verify=false", "--authfile", str(authfile),
                 "-u", "reader", "-p", "wrong", secure.host, check=False)
    assert bad.returncode != 0
    podman(tmp_path / "login", "login", "--tls-verify=false", "--authfile", str(authfile),
           "-u", "reader", "-p", "reader-pw-1", secure.host)
    assert secure.host in json.loads(authfile.read_text())["auths"]
    podman_pull(priv, tmp_path / "reader-pull", "--authfile", str(authfile))
    podman_pull(pub, tmp_path / "anonymous")
    anonymous = podman_pull(priv, tmp_path / "anonymous-private", check=False)
    assert anonymous.returncode != 0


def test_serving_the_network_with_auth_off_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run([str(LAZYREG_BIN), "serve", "--host", "0.0.0.0", "--auth", "off",
                           "--port", str(free_port()), "--data-dir", str(tmp_path / "d")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "refusing to listen on 0.0.0.0 with --auth off" in proc.stderr
    assert "--auth on" in proc.stderr
    assert not (tmp_path / "d").exists()


def test_generated_admin_password_is_printed_once(tmp_path: Path) -> None:
    server = start_lazyreg(tmp_path / "data", env={"LAZYREG_AUTH": "on"})
    try:
        found = re.findall(r"created the user 'admin' with the generated password: (\S+)",
                           server.logfile.read_text())
        assert len(found) == 1
        assert server.api("GET", "status/")[0] == 401
        server.headers = basic("admin", found[0])
        assert server.api("GET", "status/")[0] == 200
        server.stop()
        server = start_lazyreg(tmp_path / "data", port=free_port(), env={"LAZYREG_AUTH": "on"})
        assert server.logfile.read_text().count("generated password") == 0
    finally:
        server.stop()


def test_secrets_appear_nowhere_and_a_lost_key_is_explained(
        tmp_path: Path, upstream_basic: Upstream) -> None:
    data = tmp_path / "data"
    server = start_secure(data, LAZYREG_ADMIN_PASSWORD=ADMIN_PASSWORD)
    scheme, host = upstream_basic.url.split("://")
    dead_proxy = f"http://proxyuser:proxy-secret-77@127.0.0.1:{free_port()}"
    secrets = (PASSWORD, f"{USER}:{PASSWORD}@", "proxy-secret-77", "proxyuser:proxy")
    seen: list[str] = []
    try:
        good = server.setup_mirror(upstream_basic, "good", "fixtures/small")
        assert good["state"] == "failed"  # no credentials yet
        server.ok("PATCH", "remotes/good/", {"url": f"{scheme}://{USER}:{PASSWORD}@{host}"})
        assert server.sync("good", "good")["state"] == "completed"
        shown = server.ok("GET", "remotes/good/")
        assert shown["username"] == USER and shown["has_password"]
        assert shown["url"] == upstream_basic.url
        # Through a dead proxy with credentials: the sync fails, and so does a lazy blob.
        proxied = server.ok("POST", "remotes/", {
            "name": "proxied", "url": f"{scheme}://{USER}:{PASSWORD}@{host}",
            "upstream_name": "fixtures/small", "proxy_url": dead_proxy})
        assert proxied["proxy_url"].startswith("http://127.0.0.1:")
        assert proxied["has_proxy_credentials"]
        server.ok("POST", "repositories/", {"name": "proxied"})
        failed = server.sync("proxied", "proxied")
        assert failed["state"] == "failed" and failed["error"]
        server.ok("PATCH", "remotes/good/", {"proxy_url": dead_proxy})
        layer = sorted(layers(upstream_basic.tag("fixtures/small", "v1")))[0]
        status, body = http_json("GET", f"{server.url}/v2/good/blobs/{layer}")
        assert status == 502, body
        seen.append(json.dumps(body))
        for path in ("remotes/", "remotes/good/", "remotes/proxied/", "tasks/",
                     f"tasks/{failed['id']}/", "content/blobs/?repository=good"):
            seen.append(json.dumps(server.ok("GET", path)))
        server.stop()
        seen.append(server.logfile.read_text())
        stored = b"".join(p.read_bytes() for p in data.glob("lazyreg.db*"))
        for secret in secrets:
            assert secret.encode() not in stored, secret
            for text in seen:
                assert secret not in text, (secret, text[:3000])

        # The key file is lost: the server starts, says so, answers, and fails clearly.
        (data / "secret.key").unlink()
        server = start_secure(data, LAZYREG_ADMIN_PASSWORD=ADMIN_PASSWORD)
        assert "cannot decrypt the stored secrets of 2 remote(s)" in server.logfile.read_text()
        assert server.ok("GET", "remotes/good/")["has_password"]
        task = server.sync("good", "good")
        assert task["state"] == "failed"
        assert "cannot decrypt the password of remote 'good'" in task["error"]
        status, body = http_json("GET", f"{server.url}/v2/good/blobs/{layer}")
        assert status == 503 and "cannot decrypt" in json.dumps(body)
        assert server.proc.poll() is None and server.api("GET", "status/")[0] == 200
    finally:
        server.stop()
        assert server.proc.returncode in (0, -signal.SIGINT)
