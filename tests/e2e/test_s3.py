"""The S3 backend end to end: lazyreg storing in a bucket of the real S3 server.

Single flight, corruption, a crash mid-upload, presigned redirects with real
clients, an outage of the store, and bad settings at start-up. Each test has a
bucket of its own; what is left in it (objects, multipart uploads) is listed
through the S3 API.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.expect import layers
from tests.e2e.test_faults import _check, _pull_many, _wait_stored, big_layer, blob_gets, via
from tests.rig import (
    LAZYREG_BIN,
    FaultProxy,
    Upstream,
    dir_blobs,
    free_port,
    podman_pull,
    skopeo_copy,
    start_lazyreg,
)
from tests.s3rig import S3Server, TcpRelay

pytestmark = pytest.mark.e2e

PREFIX = "blobs/"


@pytest.fixture
def faults(upstream: Upstream, tmp_path: Path) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream.url, tmp_path / "faults.log")
    yield proxy
    proxy.stop()


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket()


def blob_keys(s3: S3Server, bucket: str) -> set[str]:
    """The digests stored in the bucket, from its keys (`blobs/sha256/ab/<hex>`)."""
    return {"sha256:" + k.rsplit("/", 1)[1] for k in s3.keys(bucket, PREFIX)}


def test_20_clients_one_upstream_get_one_object_no_upload_left(
        s3_server: S3Server, bucket: str, upstream: Upstream, faults: FaultProxy,
        tmp_path: Path) -> None:
    faults.configure(rate_kib=32 * 1024, reset=True)  # 64 MiB in about 2 s: all join
    server = start_lazyreg(tmp_path / "data", env=s3_server.env(bucket))
    try:
        server.setup_mirror(via(faults.url, upstream), "mirror", "fixtures/big")
        digest, _ = big_layer(upstream)
        mark = upstream.mark()
        results = asyncio.run(_pull_many([f"{server.url}/v2/mirror/blobs/{digest}"] * 20))
        assert all(r[0] == digest for r in results)
        assert blob_gets(upstream, digest, mark) == [200]
        _wait_stored(server, digest)
        assert blob_keys(s3_server, bucket) == {digest} | (
            server.artifact_digests() - {digest})  # configs and manifests besides
        assert s3_server.keys(bucket, PREFIX).count(
            f"{PREFIX}sha256/{digest[7:9]}/{digest[7:]}") == 1
        assert s3_server.uploads(bucket) == []
        # Stored: served from the bucket, ranges by ranged GETs, no upstream GET.
        mark = upstream.mark()
        again = asyncio.run(_pull_many([f"{server.url}/v2/mirror/blobs/{digest}"] * 2))
        assert all(r[0] == digest for r in again)
        request = urllib.request.Request(f"{server.url}/v2/mirror/blobs/{digest}",
                                         headers={"Range": "bytes=1000-1999"})
        with urllib.request.urlopen(request) as resp:
            assert resp.status == 206 and len(resp.read()) == 1000
        assert blob_gets(upstream, digest, mark) == []
        assert _check(server)["ok"]
        # The status: where blobs go, and the stored figures (from the database).
        status = server.ok("GET", "status/")
        assert status["storage"]["path"] == f"s3://{bucket}/{PREFIX}"
        assert status["cache"]["evictable_bytes"] >= 64 * 1024 * 1024
        with urllib.request.urlopen(f"{server.url}/") as resp:
            assert 'id="stored-count"' in resp.read().decode()
    finally:
        server.stop()


def test_a_corrupted_download_stores_nothing_and_leaves_no_upload(
        s3_server: S3Server, bucket: str, upstream: Upstream, faults: FaultProxy,
        tmp_path: Path) -> None:
    server = start_lazyreg(tmp_path / "data", env=s3_server.env(bucket))
    try:
        server.setup_mirror(via(faults.url, upstream), "mirror", "fixtures/big")
        digest, _ = big_layer(upstream)
        before = blob_keys(s3_server, bucket)
        faults.configure(corrupt_at=20 * 1024 * 1024, reset=True)  # after parts went up
        url = f"{server.url}/v2/mirror/blobs/{digest}"
        # The connection is cut before the last byte: never a wrong blob served whole.
        with pytest.raises(Exception), urllib.request.urlopen(url) as resp:  # noqa: B017
            resp.read()
        deadline = time.monotonic() + 30
        while s3_server.uploads(bucket) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert s3_server.uploads(bucket) == []
        assert blob_keys(s3_server, bucket) == before
        assert digest not in server.artifact_digests()
    finally:
        server.stop()


def test_kill_9_mid_upload_then_the_restart_sweeps_and_the_next_pull_stores(
        s3_server: S3Server, bucket: str, upstream: Upstream, faults: FaultProxy,
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = s3_server.env(bucket)
    server = start_lazyreg(data, env=env)
    faults.configure(rate_kib=8 * 1024, reset=True)  # 8 s for 64 MiB
    server.setup_mirror(via(faults.url, upstream), "mirror", "fixtures/big")
    digest, _ = big_layer(upstream)

    def pull() -> None:
        try:
            with urllib.request.urlopen(f"{server.url}/v2/mirror/blobs/{digest}") as resp:
                resp.read()
        except Exception:  # the server dies under it
            pass
    reader = threading.Thread(target=pull)
    reader.start()
    deadline = time.monotonic() + 30
    while not s3_server.uploads(bucket):
        assert time.monotonic() < deadline, "no multipart upload started"
        time.sleep(0.05)
    time.sleep(1.5)  # a part or two up
    server.kill()
    reader.join(30)
    assert s3_server.uploads(bucket) != []  # what a dead worker leaves

    restarted = start_lazyreg(data, env=env)
    try:
        assert s3_server.uploads(bucket) == []  # the start-up sweep aborted it
        assert digest not in blob_keys(s3_server, bucket)
        faults.configure(rate_kib=0, reset=True)
        with urllib.request.urlopen(f"{restarted.url}/v2/mirror/blobs/{digest}") as resp:
            assert "sha256:" + hashlib.sha256(resp.read()).hexdigest() == digest
        _wait_stored(restarted, digest)
        assert digest in blob_keys(s3_server, bucket)
        assert s3_server.uploads(bucket) == []
        assert not list((data / "spool").rglob("*.part"))
        assert _check(restarted)["ok"]
    finally:
        restarted.stop()


def test_redirects_to_presigned_urls_for_skopeo_podman_and_ranges(
        s3_server: S3Server, bucket: str, upstream: Upstream, tmp_path: Path) -> None:
    server = start_lazyreg(tmp_path / "data",
                           env=s3_server.env(bucket, LAZYREG_STORAGE_REDIRECT="true"))
    try:
        server.setup_mirror(upstream, "mirror", "fixtures/small")
        v1 = upstream.tag("fixtures/small", "v1")
        skopeo_copy(f"{server.host}/mirror:v1", tmp_path / "first")  # fetched, stored
        assert dir_blobs(tmp_path / "first") == v1["blobs"]
        for digest in layers(v1):
            _wait_stored(server, digest)

        digest = sorted(layers(v1))[0]
        url = f"{server.url}/v2/mirror/blobs/{digest}"
        for method in ("GET", "HEAD"):
            opener = urllib.request.build_opener(_NoRedirect())
            with pytest.raises(urllib.error.HTTPError) as answer:
                opener.open(urllib.request.Request(url, method=method))
            assert answer.value.code == 307
            location = answer.value.headers["Location"]
            answer.value.close()
            assert location.startswith(s3_server.endpoint)
            assert "X-Amz-Signature=" in location
        request = urllib.request.Request(url, headers={"Range": "bytes=10-109"})
        with urllib.request.urlopen(request) as resp:  # through the 307
            body = resp.read()
        with urllib.request.urlopen(url) as resp:
            whole = resp.read()
        assert "sha256:" + hashlib.sha256(whole).hexdigest() == digest
        assert body == whole[10:110]

        mark = upstream.mark()
        skopeo_copy(f"{server.host}/mirror:v1", tmp_path / "skopeo")
        assert dir_blobs(tmp_path / "skopeo") == v1["blobs"]
        podman_pull(f"{server.host}/mirror:v1", tmp_path / "podman")
        assert upstream.count("GET", r"^/v2/.+/blobs/sha256:", since=mark) == 0
    finally:
        server.stop()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def test_bad_settings_stop_the_start_with_one_line(
        s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    """A wrong secret, a missing bucket, an unreachable endpoint: one line each, naming the
    setting, and a non-zero exit (the three servers start at once)."""
    cases = {"s3_secret_access_key": {"LAZYREG_S3_SECRET_ACCESS_KEY": "wrong"},
             "storage_url": {"LAZYREG_STORAGE_URL": "s3://no-such-bucket-here/blobs"},
             "s3_endpoint_url": {"LAZYREG_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}}
    procs = {named: subprocess.Popen(
        [str(LAZYREG_BIN), "serve", "--port", str(free_port()),
         "--data-dir", str(tmp_path / named)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, **s3_server.env(bucket), **wrong})
        for named, wrong in cases.items()}
    for named, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode != 0
        assert "Traceback" not in out + err
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and named in errors[0], err

def _get(url: str, timeout: float = 60) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


OUTAGE = 30.0  # seconds the store stays away


def test_an_outage_of_the_store_under_a_running_pull(
        s3_server: S3Server, bucket: str, upstream: Upstream, faults: FaultProxy,
        tmp_path: Path) -> None:
    """The store goes away mid-download, for OUTAGE seconds: the pull under way is relayed
    whole and nothing is stored; a stored blob gets 503 + Retry-After, fast, all along;
    /readyz fails; when the store is back, everything works again without a restart of
    lazyreg."""
    relay = TcpRelay(s3_server.endpoint)
    env = s3_server.env(bucket, LAZYREG_S3_ENDPOINT_URL=relay.url,
                        LAZYREG_STAGING_SWEEP_INTERVAL="1")
    server = start_lazyreg(tmp_path / "data", env=env)
    try:
        server.setup_mirror(via(faults.url, upstream), "mirror", "fixtures/big")
        digest, _ = big_layer(upstream)
        stored = sorted(server.artifact_digests())[0]  # the image's config, stored at sync
        assert _get(f"{server.url}/v2/mirror/blobs/{stored}")[0] == 200
        faults.configure(rate_kib=6 * 1024, reset=True)  # about 11 s for 64 MiB

        pulled: list[bytes] = []
        pull = threading.Thread(target=lambda: pulled.append(
            _get(f"{server.url}/v2/mirror/blobs/{digest}", timeout=120)[2]))
        pull.start()
        deadline = time.monotonic() + 30
        while not s3_server.uploads(bucket):
            assert time.monotonic() < deadline, "no multipart upload started"
            time.sleep(0.05)
        outage = time.monotonic()
        relay.down()
        if s3_server.dir is not None:
            s3_server.halt()  # the real server stops too

        status, headers, body = _get(f"{server.url}/v2/mirror/blobs/{stored}")
        assert status == 503 and headers.get("Retry-After") == "10"
        assert json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"
        status, _, body = _get(f"{server.url}/readyz")
        assert status == 503 and json.loads(body)["checks"]["storage"] != "ok"
        pull.join(120)
        assert pulled and "sha256:" + hashlib.sha256(pulled[0]).hexdigest() == digest
        while time.monotonic() - outage < OUTAGE:  # all along, a pull is a fast 503
            asked = time.monotonic()
            status, headers, _ = _get(f"{server.url}/v2/mirror/blobs/{stored}")
            assert status == 503 and headers.get("Retry-After") == "10"
            assert time.monotonic() - asked < 10, "a pull waited on the missing store"
            time.sleep(2)

        if s3_server.dir is not None:
            s3_server.resume()
        relay.up(s3_server.endpoint)
        deadline = time.monotonic() + 60
        while _get(f"{server.url}/readyz")[0] != 200:
            assert time.monotonic() < deadline, "not ready again"
            time.sleep(0.2)
        assert digest not in server.artifact_digests()  # relayed, not stored
        assert digest not in blob_keys(s3_server, bucket)
        faults.configure(rate_kib=0, reset=True)
        status, _, body = _get(f"{server.url}/v2/mirror/blobs/{digest}")
        assert status == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == digest
        _wait_stored(server, digest)
        deadline = time.monotonic() + 30
        while s3_server.uploads(bucket):  # the outage's upload, swept once its lease ended
            assert time.monotonic() < deadline, s3_server.uploads(bucket)
            time.sleep(0.2)
        assert _check(server)["ok"]
    finally:
        server.stop()
        relay.close()
