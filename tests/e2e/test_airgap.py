"""The air gap: export a repository version as an OCI image layout, read it with skopeo and
umoci, import it on a second server whose upstream is gone, and refuse bad archives."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.v2 import ACCEPT_ALL, request
from tests.pusher import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Pusher,
    descriptor,
    sha256,
)
from tests.rig import (
    LAZYREG_BIN,
    Lazyreg,
    Upstream,
    dir_blobs,
    podman_pull,
    run,
    skopeo_copy,
    start_lazyreg,
    start_upstream,
)

pytestmark = pytest.mark.e2e

REPO = "air/app"
SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"
BLOB_GET = r"^/v2/air/app/blobs/"


def layer(name: str, size: int) -> tuple[bytes, str]:
    """A gzipped tar holding one file of `size` deterministic bytes; (blob, diff id)."""
    data = hashlib.shake_256(name.encode()).digest(size)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, 0
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0), sha256(raw.getvalue())


def push_image(p: Pusher, ref: str | None, name: str, arch: str = "amd64",
               docker: bool = False) -> str:
    layers = [layer(f"{name}/a", 30_000), layer(f"{name}/b", 5_000)]
    config = json.dumps({"architecture": arch, "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]}
                         }).encode()
    p.blob(REPO, config)
    for blob, _ in layers:
        p.blob(REPO, blob)
    manifest_type, config_type, layer_type = ((DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER)
                                              if docker else
                                              (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER))
    return p.manifest(REPO, ref, {
        "schemaVersion": 2, "mediaType": manifest_type,
        "config": descriptor(config_type, config),
        "layers": [descriptor(layer_type, blob) for blob, _ in layers]})


def push_signature(p: Pusher, image: str) -> str:
    """A cosign signature in the OCI 1.1 way: an artifact whose subject is the image,
    listed by the referrers fallback tag (distribution 2.8 has no referrers API)."""
    payload = json.dumps({"critical": {"image": {"docker-manifest-digest": image}}}).encode()
    p.blob(REPO, b"{}")
    p.blob(REPO, payload)
    signature = p.manifest(REPO, None, {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SIG,
        "config": descriptor("application/vnd.oci.empty.v1+json", b"{}"),
        "layers": [descriptor("application/vnd.dev.cosign.simplesigning.v1+json", payload)],
        "subject": {"mediaType": OCI_MANIFEST, "digest": image,
                    "size": len(p.manifests[image])}})
    p.manifest(REPO, "sha256-" + image.removeprefix("sha256:"), {
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [descriptor(OCI_MANIFEST, p.manifests[signature], artifactType=SIG)]})
    return signature


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Upstream, dict[str, str]]]:
    """An upstream of its own (the test stops it): an OCI image with a signature, a
    multi-arch index and a Docker-typed image."""
    up = start_upstream(tmp_path_factory.mktemp("airgap-upstream"))
    p = Pusher(up.url)
    try:
        image = push_image(p, "app", "app")
        amd64 = push_image(p, None, "multi-amd64")
        arm64 = push_image(p, None, "multi-arm64", arch="arm64")
        multi = p.manifest(REPO, "multi", {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                           "manifests": [
            descriptor(OCI_MANIFEST, p.manifests[amd64],
                       platform={"os": "linux", "architecture": "amd64"}),
            descriptor(OCI_MANIFEST, p.manifests[arm64],
                       platform={"os": "linux", "architecture": "arm64"})]})
        docker = push_image(p, "docker", "docker", docker=True)
        signature = push_signature(p, image)
        yield up, {"app": image, "multi": multi, "docker": docker, "signature": signature}
    finally:
        p.close()
        up.stop()


def cli(server: Lazyreg, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([str(LAZYREG_BIN), *args], check=check, timeout=300,
               env={**os.environ, "LAZYREG_SERVER": server.url})


def blob_gets(up: Upstream, mark: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for method, path, _ in up.requests(mark):
        if method == "GET" and "/blobs/" in path:
            digest = path.rsplit("/", 1)[1]
            counts[digest] = counts.get(digest, 0) + 1
    return counts


def layout_blobs(tar: Path) -> set[str]:
    with tarfile.open(tar) as archive:
        return {"sha256:" + m.name.rsplit("/", 1)[1] for m in archive.getmembers()
                if m.isfile() and m.name.startswith("blobs/sha256/")}


def content(server: Lazyreg, repository: str) -> tuple[set[tuple[str, str]], set[str], set[str]]:
    """(tag, digest) pairs, manifest digests and blob digests of a repository's latest version."""
    def listed(kind: str) -> list[dict[str, Any]]:
        return server.ok("GET", f"content/{kind}/?repository={repository}&limit=1000")["results"]
    return ({(t["name"], t["digest"]) for t in listed("tags")},
            {m["digest"] for m in listed("manifests")}, {b["digest"] for b in listed("blobs")})


def test_round_trip_through_the_air_gap(lazyreg: Lazyreg, origin: tuple[Upstream, dict[str, str]],
                                        tmp_path: Path) -> None:
    up, digests = origin
    task = lazyreg.setup_mirror(up, "air", REPO, include_referrers=True)
    assert task["state"] == "completed", task
    stored_before = lazyreg.artifact_digests()
    layers_wanted = {b for b in content(lazyreg, "air")[2]} - stored_before
    assert layers_wanted, "an on_demand sync stores no layers"

    # --stored-only refuses, naming what is missing, and writes nothing.
    refused = cli(lazyreg, "repository", "export", "air", "--output", str(tmp_path / "no.tar"),
                  "--stored-only", check=False)
    assert refused.returncode != 0 and "not stored" in refused.stderr, refused
    assert not (tmp_path / "no.tar").exists() and not (tmp_path / "no.tar.part").exists()

    # Export: every missing layer is fetched upstream exactly once, and stored.
    mark = up.mark()
    cli(lazyreg, "repository", "export", "air", "--output", str(tmp_path / "x.tar"))
    gets = blob_gets(up, mark)
    assert set(gets) == layers_wanted and set(gets.values()) == {1}, gets
    assert layers_wanted <= lazyreg.artifact_digests()
    assert content(lazyreg, "air")[2] | content(lazyreg, "air")[1] <= layout_blobs(
        tmp_path / "x.tar")

    # skopeo and umoci read the OCI-typed tags, with the upstream's digests.
    out = tmp_path / "app"
    run(["skopeo", "copy", f"oci-archive:{tmp_path / 'x.tar'}:app", f"dir:{out}"])
    assert sha256((out / "manifest.json").read_bytes()) == digests["app"]
    run(["skopeo", "copy", "--all", f"oci-archive:{tmp_path / 'x.tar'}:multi",
         f"dir:{tmp_path / 'multi'}"])
    assert sha256((tmp_path / "multi" / "manifest.json").read_bytes()) == digests["multi"]
    mark = up.mark()
    cli(lazyreg, "-o", "json", "repository", "export", "air", "--output",
        str(tmp_path / "xdir"))
    assert blob_gets(up, mark) == {}  # all stored now
    run(["umoci", "unpack", "--image", f"{tmp_path / 'xdir'}:app", str(tmp_path / "bundle")])
    assert (tmp_path / "bundle" / "rootfs" / "app" / "a").stat().st_size == 30_000

    # An incremental export after one more tag upstream holds only its new blobs.
    p = Pusher(up.url)
    try:
        new = push_image(p, "app2", "app2")
        new_blobs = {sha256(p.manifests[new])} | set(p.blobs)
    finally:
        p.close()
    version = lazyreg.sync("air", "air")
    assert version["state"] == "completed", version
    cli(lazyreg, "repository", "export", "air", "--since", "1", "--output",
        str(tmp_path / "inc.tar.gz"))
    with tarfile.open(tmp_path / "inc.tar.gz") as archive:
        inc = {"sha256:" + m.name.rsplit("/", 1)[1] for m in archive.getmembers()
               if m.isfile() and m.name.startswith("blobs/")}
    assert inc == new_blobs
    cli(lazyreg, "repository", "export", "air", "--output", str(tmp_path / "full2.tar"))

    # The far side: the upstream is gone.
    up.stop()
    far = start_lazyreg(tmp_path / "far")
    try:
        done = cli(far, "repository", "import", "air", "--input", str(tmp_path / "x.tar"))
        assert "created version 1" in done.stdout, done
        far.ok("POST", "distributions/", {"name": "air", "base_path": "air", "repository": "air"})
        copied = tmp_path / "far-app"
        skopeo_copy(f"{far.host}/air:app", copied)
        assert sha256((copied / "manifest.json").read_bytes()) == digests["app"]
        skopeo_copy(f"{far.host}/air:docker", tmp_path / "far-docker")
        assert sha256((tmp_path / "far-docker" / "manifest.json").read_bytes()) == \
            digests["docker"]
        skopeo_copy(f"{far.host}/air:multi", tmp_path / "far-multi", "--all")
        assert len(dir_blobs(tmp_path / "far-multi")) > 0
        podman_pull(f"{far.host}/air:app", tmp_path / "podman")
        referrers = request(f"{far.url}/v2/air/referrers/{digests['app']}",
                            headers={"Accept": ACCEPT_ALL}).json()
        assert [m["digest"] for m in referrers["manifests"]] == [digests["signature"]]

        # The incremental archive onto the first import = a full import of version 2.
        cli(far, "repository", "import", "air", "--input", str(tmp_path / "inc.tar.gz"))
        cli(far, "repository", "import", "air-full", "--input", str(tmp_path / "full2.tar"))
        assert content(far, "air") == content(far, "air-full") == content(lazyreg, "air")
    finally:
        far.stop()


# ------------------------------------------------------------------ bad archives

def _tarinfo(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE,
             size: int | None = None) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if size is None else size
    if kind == tarfile.SYMTYPE or kind == tarfile.LNKTYPE:
        info.linkname, info.size = "oci-layout", 0
    if kind == tarfile.CHRTYPE:
        info.devmajor, info.devminor, info.size = 1, 3, 0
    return info, data


def good_layout() -> list[tuple[tarfile.TarInfo, bytes]]:
    """A small valid layout: one OCI image tagged `ok`."""
    blob, diff = layer("bad/a", 2_000)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [diff]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": descriptor(OCI_CONFIG, config),
                           "layers": [descriptor(OCI_LAYER, blob)]}).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [
        descriptor(OCI_MANIFEST, manifest,
                   annotations={"org.opencontainers.image.ref.name": "ok"})]}).encode()
    return [_tarinfo("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'),
            _tarinfo("index.json", index),
            *(_tarinfo("blobs/sha256/" + sha256(b).removeprefix("sha256:"), b)
              for b in (config, blob, manifest))]


def write_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    """Headers and data as given, whatever the headers say (tarfile would check them)."""
    out = bytearray()
    for info, data in members:
        out += info.tobuf(format=tarfile.PAX_FORMAT) + data + bytes(-len(data) % 512)
    path.write_bytes(bytes(out + bytes(1024)))
    return path


def _bad_archives(tmp: Path) -> Iterator[tuple[str, Path, str]]:
    """(case, archive, what its refusal must say)."""
    good = good_layout()
    layer_name = good[3][0].name
    wrong = [(i, d if i.name != layer_name else d[:-1] + b"x") for i, d in good]
    yield "wrong digest", write_tar(tmp / "wrong.tar", wrong), f"{layer_name}: its content"
    missing = [m for m in good if m[0].name != layer_name]
    yield "missing blob", write_tar(tmp / "missing.tar", missing), f"{layer_name}: missing"
    yield "escape", write_tar(tmp / "escape.tar", [*good, _tarinfo("../evil", b"x")]), \
        "escapes the layout"
    yield "absolute", write_tar(tmp / "abs.tar", [*good, _tarinfo("/etc/evil", b"x")]), \
        "absolute"
    yield "symlink", write_tar(tmp / "sym.tar", [*good, _tarinfo("blobs/l", kind=tarfile.SYMTYPE)]
                               ), "'blobs/l': a symlink"
    yield "hard link", write_tar(tmp / "hard.tar",
                                 [*good, _tarinfo("blobs/h", kind=tarfile.LNKTYPE)]), \
        "'blobs/h': a hard link"
    yield "device", write_tar(tmp / "dev.tar", [*good, _tarinfo("null", kind=tarfile.CHRTYPE)]), \
        "'null': a device file"
    info, data = _tarinfo(good[-1][0].name, good[-1][1], size=len(good[-1][1]) + 100_000)
    # The header says more than the archive holds.
    yield "oversized member", write_tar(tmp / "big.tar", [*good[:-1], (info, data)]), \
        f"{info.name}: ends after"
    yield "repeated", write_tar(tmp / "twice.tar", [*good, good[1]]), \
        "'index.json': an entry repeated"
    bomb = tmp / "bomb.tar.gz"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("blobs/sha256/" + "0" * 64)
        info.size = 80 * 1024 * 1024
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    bomb.write_bytes(gzip.compress(raw.getvalue(), compresslevel=9))
    yield "gzip bomb", bomb, "gzip bomb"


def _state(server: Lazyreg) -> tuple[int, int, int, list[str]]:
    files = sorted(str(p.relative_to(server.data_dir)) for p in
                   (server.data_dir / "storage").rglob("*") if p.is_file())
    return (server.ok("GET", "content/blobs/?limit=1")["count"],
            server.ok("GET", "content/manifests/?limit=1")["count"],
            server.ok("GET", "artifacts/?limit=1")["count"], files)


def test_bad_archives_are_refused_and_nothing_is_stored(lazyreg: Lazyreg, tmp_path: Path
                                                       ) -> None:
    lazyreg.ok("POST", "repositories/", {"name": "target"})
    before = _state(lazyreg)
    for case, archive, message in _bad_archives(tmp_path):
        task = lazyreg.ok("POST", "repositories/target/import/", {"input": str(archive)})
        task = lazyreg.wait_task(task)
        assert task["state"] == "failed", (case, task)
        assert message in task["error"], (case, task["error"])
        assert _state(lazyreg) == before, case
    assert lazyreg.ok("GET", "repositories/target/")["latest_version"] == 0
    # A refused import into a repository that does not exist creates none.
    task = lazyreg.wait_task(lazyreg.ok("POST", "repositories/fresh/import/",
                                        {"input": str(tmp_path / "wrong.tar")}))
    assert task["state"] == "failed"
    assert lazyreg.api("GET", "repositories/fresh/")[0] == 404
    # The good layout imports: the cases above failed for what they broke.
    good = write_tar(tmp_path / "good.tar", good_layout())
    task = lazyreg.wait_task(lazyreg.ok("POST", "repositories/target/import/",
                                        {"input": str(good)}))
    assert task["state"] == "completed", task
    assert lazyreg.ok("GET", "repositories/target/")["latest_version"] == 1


def test_export_and_import_refuse_bad_requests(lazyreg: Lazyreg, tmp_path: Path) -> None:
    lazyreg.ok("POST", "repositories/", {"name": "r"})
    status, body = lazyreg.api("POST", "repositories/r/versions/0/export/",
                               {"output": "relative.tar"})
    assert (status, body["field"]) == (400, "output"), body
    (tmp_path / "exists.tar").write_bytes(b"")
    status, body = lazyreg.api("POST", "repositories/r/versions/0/export/",
                               {"output": str(tmp_path / "exists.tar")})
    assert (status, body["field"]) == (400, "output"), body
    status, body = lazyreg.api("POST", "repositories/r/versions/7/export/",
                               {"output": str(tmp_path / "new.tar")})
    assert status == 404, body
    status, body = lazyreg.api("POST", "repositories/r/import/",
                               {"input": str(tmp_path / "absent.tar")})
    assert (status, body["field"]) == (400, "input"), body
    result = cli(lazyreg, "repository", "import", "r", "--input", str(tmp_path / "absent"),
                 check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
