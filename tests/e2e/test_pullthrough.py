"""Pull-through distributions against the rig's real registry, counted at its fault proxy
and in its access log: podman as a mirror client, the second pull, single flight (one
process and two), the upstream down, 404s remembered, a tag moved upstream, the root
mirror, name filters and bad input."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ON_BOTH_BACKENDS
from tests.e2e.expect import layers
from tests.e2e.v2 import ACCEPT_ALL, Answer, push_image, request
from tests.rig import (
    LAZYREG_BIN,
    FaultProxy,
    Lazyreg,
    Upstream,
    dir_blobs,
    free_port,
    run,
    skopeo_copy,
    start_lazyreg,
)

pytestmark = pytest.mark.e2e

MANIFESTS = r"^/v2/.+/manifests/"
BLOBS = r"^/v2/.+/blobs/"


@pytest.fixture
def faults(upstream: Upstream, tmp_path: Path) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream.url, tmp_path / "faults.log")
    yield proxy
    if proxy.proc.poll() is None:
        proxy.stop()


def pull_through(server: Lazyreg, url: str, base_path: str = "hub", name: str = "hub",
                 **remote: Any) -> None:
    """A remote with only a url (and `remote` settings), and a pull-through distribution."""
    server.ok("POST", "remotes/", {"name": name, "url": url, **remote})
    server.ok("POST", "distributions/", {"name": name, "base_path": base_path,
                                         "remote": name, "pull_through": True})


def manifest(server: Lazyreg, path: str, method: str = "GET") -> Answer:
    return request(f"{server.url}/v2/{path}", method, {"Accept": ACCEPT_ALL})


def code(answer: Answer) -> tuple[int, str]:
    return answer.status, answer.code


def podman_pull(ref: str, root: Path, registries_conf: Path, check: bool = True
                ) -> subprocess.CompletedProcess[str]:
    """podman with its own registries.conf; the TLS setting comes from that file."""
    runroot = tempfile.mkdtemp(prefix="lzr-", dir="/tmp")  # podman wants a short path
    try:
        return run(["podman", "--storage-driver", "vfs", "--root", str(root / "root"),
                    "--runroot", runroot, "pull", ref], check=check, timeout=300,
                   env={"CONTAINERS_REGISTRIES_CONF": str(registries_conf)})
    finally:
        shutil.rmtree(runroot, ignore_errors=True)


@ON_BOTH_BACKENDS
def test_podman_pulls_through_a_registries_conf_mirror(
        lazyreg: Lazyreg, upstream: Upstream, tmp_path: Path) -> None:
    pull_through(lazyreg, upstream.url)
    # The image's own registry does not answer: only lazyreg knows the real upstream.
    dead = f"127.0.0.1:{free_port()}"
    conf = tmp_path / "registries.conf"
    conf.write_text(f'unqualified-search-registries = []\n\n[[registry]]\nlocation = "{dead}"\n'
                    f'insecure = true\n\n[[registry.mirror]]\nlocation = "{lazyreg.host}/hub"\n'
                    'insecure = true\n')
    v1 = upstream.tag("fixtures/small", "v1")
    mark = upstream.mark()
    pulled = podman_pull(f"{dead}/fixtures/small:v1", tmp_path / "podman", conf)
    assert pulled.returncode == 0
    assert lazyreg.ok("GET", "tasks/")["count"] == 0  # no sync was run
    assert layers(v1) <= lazyreg.artifact_digests()  # the layers are stored
    log = lazyreg.logfile.read_text()
    assert f"pull-through hub/fixtures/small:v1: fetched {v1['digest']}" in log
    assert upstream.count("GET", r"^/v2/fixtures/small/manifests/v1$", mark) == 1
    repository = lazyreg.ok("GET", "repositories/hub/fixtures/small/")
    assert (repository["latest_version"], repository["retain_versions"]) == (1, 1)
    tags = lazyreg.ok("GET", "content/tags/?repository=hub/fixtures/small")["results"]
    assert [(t["name"], t["digest"]) for t in tags] == [("v1", v1["digest"])]
    # Without the mirror entry the same reference cannot be pulled at all.
    alone = tmp_path / "alone.conf"
    alone.write_text(f'[[registry]]\nlocation = "{dead}"\ninsecure = true\n')
    direct = podman_pull(f"{dead}/fixtures/small:v1", tmp_path / "podman-direct", alone,
                         check=False)
    assert direct.returncode != 0


def test_second_pull_within_tag_ttl_asks_the_upstream_nothing(
        lazyreg: Lazyreg, upstream: Upstream, faults: FaultProxy, tmp_path: Path) -> None:
    pull_through(lazyreg, faults.url)
    v1 = upstream.tag("fixtures/small", "v1")
    skopeo_copy(f"{lazyreg.host}/hub/fixtures/small:v1", tmp_path / "first")
    assert dir_blobs(tmp_path / "first") == v1["blobs"]
    first = faults.counters()["requests"]
    assert first > 0
    skopeo_copy(f"{lazyreg.host}/hub/fixtures/small:v1", tmp_path / "second")
    assert dir_blobs(tmp_path / "second") == v1["blobs"]
    assert faults.counters()["requests"] == first  # no manifest, no blob, nothing


def _concurrently(fn: Any, args: list[Any]) -> list[Any]:
    with ThreadPoolExecutor(len(args)) as pool:
        return list(pool.map(fn, args))


def test_twenty_first_requests_make_one_upstream_manifest_get(
        lazyreg: Lazyreg, upstream: Upstream, faults: FaultProxy) -> None:
    pull_through(lazyreg, faults.url)
    faults.configure(match=MANIFESTS, delay_ms=300, reset=True)  # all 20 arrive meanwhile
    entry = upstream.tag("fixtures/multiarch", "latest")
    mark = upstream.mark()
    answers = _concurrently(lambda _: manifest(lazyreg, "hub/fixtures/multiarch/manifests/latest"),
                            list(range(20)))
    assert [a.status for a in answers] == [200] * 20
    assert {a.headers["Docker-Content-Digest"] for a in answers} == {entry["digest"]}
    assert upstream.count("GET", r"^/v2/fixtures/multiarch/manifests/latest$", mark) == 1
    assert upstream.count("HEAD", MANIFESTS, mark) == 0


def test_twenty_first_requests_over_two_processes_make_one_upstream_manifest_get(
        lazyreg: Lazyreg, upstream: Upstream, faults: FaultProxy) -> None:
    pull_through(lazyreg, faults.url)
    second = start_lazyreg(lazyreg.data_dir)  # same database, same storage
    try:
        faults.configure(match=MANIFESTS, delay_ms=500, reset=True)
        entry = upstream.tag("fixtures/oci", "1.0")
        mark = upstream.mark()
        servers = [lazyreg, second] * 10
        answers = _concurrently(lambda s: manifest(s, "hub/fixtures/oci/manifests/1.0"), servers)
        assert [a.status for a in answers] == [200] * 20
        assert {a.headers["Docker-Content-Digest"] for a in answers} == {entry["digest"]}
        assert upstream.count("GET", r"^/v2/fixtures/oci/manifests/1\.0$", mark) == 1
        assert second.ok("GET", "repositories/hub/fixtures/oci/")["latest_version"] == 1
    finally:
        second.stop()


def _until(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _timed(fn: Any) -> tuple[Any, float]:
    started = time.monotonic()
    return fn(), time.monotonic() - started


def test_upstream_down_known_tags_still_pull_new_ones_fail_fast(
        lazyreg: Lazyreg, upstream: Upstream, faults: FaultProxy, tmp_path: Path) -> None:
    # tag_ttl 0: every request re-checks the tag upstream, so each meets the outage.
    pull_through(lazyreg, faults.url, tag_ttl=0)
    v1 = upstream.tag("fixtures/small", "v1")
    skopeo_copy(f"{lazyreg.host}/hub/fixtures/small:v1", tmp_path / "before")

    # An upstream that does not answer in time: the stored tag is served after STALE_WAIT.
    faults.configure(match=r"^HEAD /v2/.+/manifests/", delay_ms=3000, reset=True)
    slow, took = _timed(lambda: manifest(lazyreg, "hub/fixtures/small/manifests/v1"))
    assert slow.status == 200 and slow.headers["Docker-Content-Digest"] == v1["digest"]
    assert took < 3.5, took
    # The re-check goes on without the client, and ends.
    _until(lambda: "hub/fixtures/small:v1: confirmed" in lazyreg.logfile.read_text())

    faults.configure(match=".*", fail_first=1_000_000, fail_status=503, delay_ms=0,
                     reset=True)
    skopeo_copy(f"{lazyreg.host}/hub/fixtures/small:v1", tmp_path / "during-503")
    assert dir_blobs(tmp_path / "during-503") == v1["blobs"]
    assert faults.counters()["failed"] > 0  # it did ask, and was refused
    never, took = _timed(lambda: manifest(lazyreg, "hub/fixtures/small/manifests/v2"))
    assert never.status == 503 and never.code == "UNAVAILABLE", never.body
    assert took < 8, took

    faults.stop()  # connection refused from now on
    skopeo_copy(f"{lazyreg.host}/hub/fixtures/small:v1", tmp_path / "stopped")
    assert dir_blobs(tmp_path / "stopped") == v1["blobs"]
    never, took = _timed(lambda: manifest(lazyreg, "hub/fixtures/oci/manifests/1.0"))
    assert never.status == 503 and never.code == "UNAVAILABLE", never.body
    assert took < 8, took
    assert "served stale from storage" in lazyreg.logfile.read_text()
    metrics = request(f"{lazyreg.url}/metrics").body.decode()
    stale = re.search(r'^lazyreg_stale_serves_total\{kind="manifest"\} (\S+)$', metrics, re.M)
    assert stale is not None and float(stale.group(1)) >= 3, metrics[-2000:]


def test_upstream_404_is_manifest_unknown_and_remembered(
        lazyreg: Lazyreg, upstream: Upstream) -> None:
    pull_through(lazyreg, upstream.url)
    mark = upstream.mark()
    path = "hub/fixtures/nothing-here/manifests/v1"
    answers = _concurrently(lambda _: manifest(lazyreg, path), list(range(25)))
    answers += [manifest(lazyreg, path) for _ in range(25)]
    assert {code(a) for a in answers} == {(404, "MANIFEST_UNKNOWN")}
    assert len(upstream.requests(mark)) == 1
    # A missing tag of a repository that exists is the same.
    missing = manifest(lazyreg, "hub/fixtures/small/manifests/no-such-tag")
    assert code(missing) == (404, "MANIFEST_UNKNOWN")
    assert lazyreg.ok("GET", "repositories/")["count"] == 0  # a 404 creates nothing


def test_tag_moved_upstream_is_seen_after_tag_ttl(
        lazyreg: Lazyreg, upstream: Upstream) -> None:
    repo = f"pullthrough/moving-{free_port()}"  # a repository no other test uses
    old, _ = push_image(upstream.url, repo, "v1", "the first content")
    pull_through(lazyreg, upstream.url, tag_ttl=1)
    path = f"hub/{repo}/manifests/v1"
    assert manifest(lazyreg, path).headers["Docker-Content-Digest"] == old
    name = f"hub/{repo}"
    assert lazyreg.ok("GET", f"repositories/{name}/")["latest_version"] == 1

    new, _ = push_image(upstream.url, repo, "v1", "other content, same tag")
    mark = upstream.mark()
    assert manifest(lazyreg, path).headers["Docker-Content-Digest"] == old  # within tag_ttl
    assert upstream.requests(mark) == []
    time.sleep(1.1)  # the tag_ttl under test
    assert manifest(lazyreg, path).headers["Docker-Content-Digest"] == new
    assert upstream.count("HEAD", MANIFESTS, mark) == 1
    assert upstream.count("GET", MANIFESTS, mark) == 1
    shown = lazyreg.ok("GET", f"repositories/{name}/")
    assert shown["latest_version"] == 2
    versions = lazyreg.ok("GET", f"repositories/{name}/versions/")["results"]
    assert [v["number"] for v in versions] == [2]  # retain_versions 1
    assert versions[0]["added"]["tags"] == 1 and versions[0]["removed"]["tags"] == 1
    # Unchanged upstream: after tag_ttl, a HEAD and no GET, and no new version.
    time.sleep(1.1)
    mark = upstream.mark()
    assert manifest(lazyreg, path).headers["Docker-Content-Digest"] == new
    assert (upstream.count("HEAD", MANIFESTS, mark), upstream.count("GET", MANIFESTS, mark)) \
        == (1, 0)
    assert lazyreg.ok("GET", f"repositories/{name}/")["latest_version"] == 2
    # Gone upstream: a 404, and the tag leaves the repository in a new version.
    deleted = request(f"{upstream.url}/v2/{repo}/manifests/{new}", "DELETE")
    assert deleted.status == 202, deleted.body
    time.sleep(1.1)
    assert code(manifest(lazyreg, path)) == (404, "MANIFEST_UNKNOWN")
    assert lazyreg.ok("GET", f"repositories/{name}/")["latest_version"] == 3
    assert lazyreg.ok("GET", f"content/tags/?repository={name}")["count"] == 0
    assert lazyreg.ok("GET", "check/")["ok"]


def test_root_mirror_answers_as_the_docker_daemon_and_containerd_ask(
        lazyreg: Lazyreg, upstream: Upstream, tmp_path: Path) -> None:
    pull_through(lazyreg, upstream.url, base_path="", name="root")
    lazyreg.setup_mirror(upstream, "plain", "fixtures/oci")  # an exact base path wins
    v1 = upstream.tag("fixtures/small", "v1")
    # dockerd's registry-mirrors: /v2/<upstream name>/..., no prefix.
    got = manifest(lazyreg, "fixtures/small/manifests/v1")
    assert got.status == 200 and got.headers["Docker-Content-Digest"] == v1["digest"]
    # containerd's hosts.toml mirror adds ?ns=<registry>.
    again = manifest(lazyreg, "fixtures/small/manifests/v1?ns=docker.io")
    assert again.headers["Docker-Content-Digest"] == v1["digest"]
    layer = sorted(layers(v1))[0]
    blob = request(f"{lazyreg.url}/v2/fixtures/small/blobs/{layer}?ns=docker.io")
    assert blob.status == 200 and len(blob.body) == upstream.index["blobs"][layer]
    head = manifest(lazyreg, f"fixtures/small/manifests/{v1['digest']}?ns=docker.io", "HEAD")
    assert head.status == 200
    skopeo_copy(f"{lazyreg.host}/fixtures/small:v1", tmp_path / "skopeo")
    assert dir_blobs(tmp_path / "skopeo") == v1["blobs"]
    plain = manifest(lazyreg, "plain/manifests/1.0")
    assert plain.headers["Docker-Content-Digest"] == upstream.tag("fixtures/oci", "1.0")["digest"]
    catalog = request(f"{lazyreg.url}/v2/_catalog").json()
    assert catalog == {"repositories": ["fixtures/small", "plain"]}
    tags = request(f"{lazyreg.url}/v2/fixtures/small/tags/list").json()
    assert tags == {"name": "fixtures/small", "tags": ["v1"]}
    assert lazyreg.ok("GET", "repositories/root/fixtures/small/")["latest_version"] == 1


def test_name_and_tag_filters_refuse_without_asking_upstream(
        lazyreg: Lazyreg, upstream: Upstream) -> None:
    pull_through(lazyreg, upstream.url, include_names=["fixtures/*"],
                 exclude_names=["fixtures/big", "fixtures/m*"], exclude_tags=["v2"])
    mark = upstream.mark()
    for path in ("hub/fixtures/big/manifests/latest", "hub/fixtures/many/manifests/t0001",
                 "hub/elsewhere/small/manifests/v1"):
        assert code(manifest(lazyreg, path)) == (404, "NAME_UNKNOWN"), path
    assert code(manifest(lazyreg, "hub/fixtures/small/manifests/v2")) == (404,
                                                                         "MANIFEST_UNKNOWN")
    assert upstream.requests(mark) == []
    assert manifest(lazyreg, "hub/fixtures/small/manifests/v1").status == 200


def test_bad_names_and_references_are_refused_without_asking_upstream(
        lazyreg: Lazyreg, upstream: Upstream) -> None:
    pull_through(lazyreg, upstream.url)
    pull_through(lazyreg, upstream.url, base_path="", name="root")
    mark = upstream.mark()
    for path in ("hub/Fixtures/small", "hub/fixtures//small", "hub/fixtures/small-",
                 "hub/-fixtures/small", "hub/fixtures/sm@ll", "hub/" + "a" * 300,
                 "Fixtures/small", "fixtures/small/"):
        answer = manifest(lazyreg, f"{path}/manifests/v1")
        assert code(answer) == (400, "NAME_INVALID"), (path, answer.body)
    assert code(manifest(lazyreg, "hub/fixtures/small/manifests/v1!")) == (400,
                                                                          "MANIFEST_INVALID")
    assert code(manifest(lazyreg, "hub/fixtures/small/manifests/sha256:abc")) == (
        400, "DIGEST_INVALID")
    # A valid name, but `<distribution>/<upstream name>` is too long for a repository name.
    lazyreg.ok("POST", "distributions/", {"name": "d" * 40, "base_path": "long",
                                          "remote": "hub", "pull_through": True})
    long_name = "/".join(["a" * 60] * 4)
    assert code(manifest(lazyreg, f"long/{long_name}/manifests/v1")) == (400, "NAME_INVALID")
    assert upstream.requests(mark) == []


def test_a_pulled_through_repository_is_a_repository_like_any_other(
        lazyreg: Lazyreg, upstream: Upstream, tmp_path: Path) -> None:
    pull_through(lazyreg, upstream.url)
    entry = upstream.tag("fixtures/multiarch", "latest")
    skopeo_copy(f"{lazyreg.host}/hub/fixtures/multiarch:latest", tmp_path / "all", "--all")
    assert dir_blobs(tmp_path / "all") == entry["blobs"]
    name = "hub%2Ffixtures%2Fmultiarch"  # percent-encoded works as well as raw slashes
    manifests = lazyreg.ok("GET", "content/manifests/?repository=hub/fixtures/multiarch")
    assert {m["digest"] for m in manifests["results"]} == set(entry["manifests"])
    # Served by a plain distribution too, and a pinned version survives retain_versions.
    lazyreg.ok("POST", "distributions/", {"name": "pinned", "base_path": "pinned",
                                          "repository": "hub/fixtures/multiarch",
                                          "repository_version": 1})
    assert manifest(lazyreg, "hub/fixtures/multiarch/manifests/oci-index").status == 200
    versions = lazyreg.ok("GET", f"repositories/{name}/versions/")["results"]
    assert [v["number"] for v in versions] == [2, 1]
    assert manifest(lazyreg, "pinned/manifests/latest").status == 200
    assert manifest(lazyreg, "pinned/manifests/oci-index").status == 404
    assert lazyreg.ok("GET", "check/")["ok"]
    proc = run([str(LAZYREG_BIN), "--server", lazyreg.url, "-o", "json",
                "repository", "show", "hub/fixtures/multiarch"])
    assert '"latest_version": 2' in proc.stdout


def test_access_rules_and_anonymous_pull_through_with_auth_on(
        upstream: Upstream, tmp_path: Path) -> None:
    server = start_lazyreg(tmp_path / "data", env={"LAZYREG_AUTH": "on",
                                                   "LAZYREG_ADMIN_PASSWORD": "admin-pw-1"})
    server.headers = {"Authorization": "Basic " + base64.b64encode(b"admin:admin-pw-1").decode()}
    try:
        server.ok("POST", "users/", {"username": "reader", "password": "reader-pw-1"})
        server.ok("POST", "users/", {"username": "stranger", "password": "stranger-pw-1"})
        server.ok("POST", "remotes/", {"name": "up", "url": upstream.url})
        server.ok("POST", "distributions/", {"name": "hub", "base_path": "hub", "remote": "up",
                                             "pull_through": True,
                                             "anonymous_pull_through": False})
        server.ok("POST", "distributions/", {"name": "vault", "base_path": "team/vault",
                                             "remote": "up", "pull_through": True,
                                             "private": True, "readers": ["reader"]})
        v1 = upstream.tag("fixtures/small", "v1")
        hub, vault = f"{server.host}/hub/fixtures/small", f"{server.host}/team/vault/fixtures/oci"

        # A public pull-through distribution: anonymous clients get stored content only.
        mark = upstream.mark()
        refused = skopeo_copy(f"{hub}:v1", tmp_path / "anon", check=False)
        assert refused.returncode != 0 and "unauthorized" in refused.stderr.lower()
        assert upstream.requests(mark) == []
        skopeo_copy(f"{hub}:v1", tmp_path / "reader", "--src-creds", "reader:reader-pw-1")
        assert dir_blobs(tmp_path / "reader") == v1["blobs"]
        skopeo_copy(f"{hub}:v1", tmp_path / "anon-stored")  # now stored: anyone may pull it
        assert dir_blobs(tmp_path / "anon-stored") == v1["blobs"]
        assert skopeo_copy(f"{hub}:v2", tmp_path / "anon-v2", check=False).returncode != 0

        # A private one, matched by its base-path prefix: its readers only.
        assert skopeo_copy(f"{vault}:1.0", tmp_path / "v-anon", check=False).returncode != 0
        assert skopeo_copy(f"{vault}:1.0", tmp_path / "v-stranger", "--src-creds",
                           "stranger:stranger-pw-1", check=False).returncode != 0
        skopeo_copy(f"{vault}:1.0", tmp_path / "v-reader", "--src-creds", "reader:reader-pw-1")
        assert dir_blobs(tmp_path / "v-reader") == upstream.tag("fixtures/oci", "1.0")["blobs"]
        # The token server grants a name under a pull-through base path by that prefix.
        token = request(f"{server.url}/token?service=lazyreg&scope=repository:"
                        "team/vault/fixtures/oci:pull",
                        headers={"Authorization": "Basic " + base64.b64encode(
                            b"reader:reader-pw-1").decode()}).json()["token"]
        claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
        assert claims["access"] == [{"type": "repository", "name": "team/vault/fixtures/oci",
                                     "actions": ["pull"]}]
    finally:
        server.stop()


@pytest.mark.postgres
def test_two_servers_on_postgres_pull_through_new_names_and_tags_once(
        postgres_url: str, upstream: Upstream, tmp_path: Path) -> None:
    faults = FaultProxy(upstream.url, tmp_path / "faults.log")
    first = start_lazyreg(tmp_path / "data", database_url=postgres_url)
    second = start_lazyreg(tmp_path / "data", database_url=postgres_url)
    try:
        pull_through(first, faults.url)
        faults.configure(match=MANIFESTS, delay_ms=300, reset=True)
        # Two tags of a name never seen, on both servers at once: the repository is
        # created once, each tag is fetched once, and both land in its versions.
        wanted = [("many", "t0001"), ("many", "t0002")] * 5
        mark = upstream.mark()
        answers = _concurrently(
            lambda job: manifest(job[0], f"hub/fixtures/{job[1][0]}/manifests/{job[1][1]}"),
            [(server, w) for server in (first, second) for w in wanted])
        assert [a.status for a in answers] == [200] * 20
        for tag in ("t0001", "t0002"):
            assert upstream.count("GET", rf"^/v2/fixtures/many/manifests/{tag}$", mark) == 1
        tags = first.ok("GET", "content/tags/?repository=hub/fixtures/many")["results"]
        assert sorted(t["name"] for t in tags) == ["t0001", "t0002"]
        assert first.ok("GET", "repositories/")["count"] == 1
        assert first.ok("GET", "check/")["ok"]
    finally:
        first.stop()
        second.stop()
        faults.stop()
