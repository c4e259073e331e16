"""Hostile and malformed input against a real server: a 4xx (or 507) naming the problem,
never a 500, and never a traceback in the server's log.

The table holds every input that used to give a 500 or was silently accepted; the
tests after it need a set-up of their own: a remote that repositories still need,
a full disk (a small tmpfs in a mount namespace of the server's own), and
connections that send their request slowly or not at all.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lazyreg.serve import IDLE_TIMEOUT
from tests.rig import Lazyreg, Upstream, start_lazyreg

pytestmark = pytest.mark.e2e

API = "/api/v1/"
REMOTE = {"name": "hub", "url": "http://127.0.0.1:9", "upstream_name": "library/alpine"}
HUGE = "9223372036854775808"  # 2**63: overflows SQLite's INTEGER
LISTS = ["remotes/", "repositories/", "distributions/", "content/tags/", "content/manifests/",
         "content/blobs/", "artifacts/", "tasks/", "repositories/r/versions/"]


@dataclass(frozen=True)
class Bad:
    """One hostile request and what it must get."""

    id: str
    method: str
    path: str
    body: Any = None  # JSON-encoded, unless bytes
    status: int = 400
    field: str | None = None  # the field the error must name
    detail: str | None = None  # text the error's message must hold


def _remote(**changes: Any) -> dict[str, Any]:
    return {**REMOTE, "name": "other", **changes}


TABLE = [
    *[Bad(f"offset-{path}", "GET", f"{path}?offset={HUGE}", field="offset") for path in LISTS],
    *[Bad(f"limit-{path}", "GET", f"{path}?limit={HUGE}", field="limit") for path in LISTS],
    Bad("offset-5000-digits", "GET", "remotes/?offset=" + "9" * 5000, field="offset"),
    Bad("offset-twice", "GET", "remotes/?offset=1&offset=2", field="offset"),
    Bad("offset-unicode-digits", "GET", "remotes/?offset=%D9%A1", field="offset"),
    Bad("version-superscript", "GET", "repositories/r/versions/%C2%B2/", field="number"),
    Bad("version-20-digits", "GET", "repositories/r/versions/12345678901234567890/",
        field="number"),
    Bad("version-query-20-digits", "GET",
        "content/blobs/?repository=r&version=12345678901234567890", field="version"),
    Bad("distribution-version-20-digits", "POST", "distributions/",
        {"name": "d2", "base_path": "d2", "repository": "r",
         "repository_version": 12345678901234567890}, field="repository_version"),
    Bad("nested-arrays", "POST", "remotes/", b"[" * 200_000, detail="invalid JSON body"),
    Bad("nested-objects", "POST", "repositories/", b'{"a":' * 200_000,
        detail="invalid JSON body"),
    Bad("not-utf8", "POST", "repositories/", b'{"name": "\xff"}', detail="invalid JSON body"),
    Bad("ca-cert-non-ascii", "POST", "remotes/", _remote(ca_cert="é"), field="ca_cert"),
    Bad("ca-cert-garbage", "POST", "remotes/", _remote(ca_cert="-----BEGIN CERTIFICATE-----"),
        field="ca_cert"),
    Bad("glob-open-bracket", "POST", "remotes/", _remote(include_tags=["["]),
        field="include_tags"),
    Bad("glob-open-range", "POST", "remotes/", _remote(exclude_tags=["v[1-"]),
        field="exclude_tags"),
    Bad("glob-impossible-char", "POST", "remotes/", _remote(include_tags=["v1 *"]),
        field="include_tags"),
    Bad("glob-patch", "PATCH", "remotes/hub/", {"include_tags": ["v[1-"]},
        field="include_tags"),
    Bad("mirror-yes", "POST", "repositories/r/sync/", {"remote": "hub", "mirror": "yes"},
        field="mirror"),
    Bad("tls-verify-string", "POST", "remotes/", _remote(tls_verify="false"),
        field="tls_verify"),
    Bad("private-one", "POST", "distributions/",
        {"name": "d3", "base_path": "d3", "repository": "r", "private": 1}, field="private"),
    Bad("concurrency-true", "PATCH", "remotes/hub/", {"download_concurrency": True},
        field="download_concurrency"),
    Bad("name-nul", "POST", "repositories/", {"name": "a\u0000b"}, field="name"),
    Bad("name-newline", "POST", "repositories/", {"name": "abc\n"}, field="name"),
    Bad("description-surrogate", "POST", "repositories/", {"name": "s", "description": "\ud800"},
        field="description"),
    Bad("name-too-long", "POST", "repositories/", {"name": "a" * 256}, field="name"),
    Bad("url-bad-port", "POST", "remotes/", _remote(url="http://example.test:99999"),
        field="url"),
    Bad("body-too-large", "POST", "remotes/", b" " * (2 * 1024 * 1024), status=413),
    Bad("v2-body", "GET", "/v2/", b"x" * 100, status=413),
    Bad("unknown-field", "POST", "repositories/", {"name": "u", "nmae": "typo"}, field="nmae"),
    Bad("force-not-boolean", "DELETE", "remotes/hub/?force=yes", field="force"),
]


def _request(server: Lazyreg, bad: Bad) -> tuple[int, dict[str, Any]]:
    url = server.url + (bad.path if bad.path.startswith("/") else API + bad.path)
    data = bad.body if isinstance(bad.body, bytes) or bad.body is None else json.dumps(
        bad.body).encode()
    req = urllib.request.Request(url, data=data, method=bad.method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    lazyreg = start_lazyreg(tmp_path_factory.mktemp("bad-input") / "data")
    lazyreg.ok("POST", "remotes/", REMOTE)
    lazyreg.ok("POST", "repositories/", {"name": "r"})
    lazyreg.ok("POST", "distributions/", {"name": "d", "base_path": "d", "repository": "r"})
    yield lazyreg
    lazyreg.stop()
    assert "Traceback" not in lazyreg.logfile.read_text(), lazyreg.logfile.read_text()[-5000:]


@pytest.mark.parametrize("bad", TABLE, ids=[b.id for b in TABLE])
def test_bad_input_is_refused_with_a_clear_error(server: Lazyreg, bad: Bad) -> None:
    status, body = _request(server, bad)
    assert status == bad.status, body
    if bad.path.startswith("/v2"):
        assert body["errors"][0]["code"] == "UNSUPPORTED"
        return
    assert body["detail"], body
    if bad.field:
        assert body["field"] == bad.field, body
        assert bad.field in body["detail"], body
    if bad.detail:
        assert bad.detail in body["detail"], body
    # Nothing was written: the set-up's resources are as they were.
    assert server.ok("GET", "remotes/hub/")["include_tags"] is None
    assert [r["name"] for r in server.ok("GET", "remotes/")["results"]] == ["hub"]


def test_huge_limit_below_the_integer_bound_is_capped(server: Lazyreg) -> None:
    # Like Django REST framework: a page size above the maximum is capped, not refused.
    page = server.ok("GET", "tasks/?limit=2147483647")
    assert page["next"] is None and page["count"] == 0


# ------------------------------------------------------------------ a remote still needed

def test_deleting_a_remote_that_a_repository_needs_is_a_conflict(
        lazyreg: Lazyreg, upstream: Upstream) -> None:
    lazyreg.setup_mirror(upstream, "small", "fixtures/small", include_tags=["v1"])
    status, body = lazyreg.api("DELETE", "remotes/small/")
    assert status == 409, body
    assert "small" in body["detail"] and "force=true" in body["detail"], body
    # Pin the version that needs it, then empty the latest with a mirror sync.
    lazyreg.ok("POST", "distributions/", {"name": "pinned", "base_path": "pinned",
                                          "repository": "small", "repository_version": 1})
    lazyreg.ok("PATCH", "remotes/small/", {"include_tags": ["no-such-tag"]})
    assert lazyreg.sync("small", "small", mirror=True)["state"] == "completed"
    assert lazyreg.ok("GET", "repositories/small/")["latest_version"] == 2
    assert lazyreg.api("DELETE", "remotes/small/")[0] == 409  # the pinned version 1 needs it
    lazyreg.ok("DELETE", "distributions/pinned/")
    # Now no served version needs it; nothing was deleted by the refusals before.
    assert lazyreg.api("DELETE", "remotes/small/")[0] == 204


def test_deleting_a_needed_remote_with_force(lazyreg: Lazyreg, upstream: Upstream) -> None:
    lazyreg.setup_mirror(upstream, "small", "fixtures/small", include_tags=["v2"])
    assert lazyreg.api("DELETE", "remotes/small/")[0] == 409
    assert lazyreg.api("DELETE", "remotes/small/?force=true")[0] == 204
    assert lazyreg.api("GET", "remotes/small/")[0] == 404
    assert "Traceback" not in lazyreg.logfile.read_text()


# ------------------------------------------------------------------ a full disk

def _on_small_tmpfs(size: str) -> list[str]:
    """A prefix running the server with its data directory (its last argument's
    `--data-dir`) on a tmpfs of `size`, mounted in a mount namespace of its own:
    the mount goes away with the server, whatever happens to the test."""
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    script = ('for a; do [ "$prev" = --data-dir ] && dir=$a; prev=$a; done;'
              f' mount -t tmpfs -o size={size} tmpfs "$dir" && exec "$0" "$@"')
    return ["unshare", *user, "--mount", "--", "sh", "-c", script]


def _fill(path: Path) -> None:
    """Write `path` until the file system has no byte left."""
    with path.open("wb", buffering=0) as out:
        for chunk in (1024 * 1024, 4096, 1):
            try:
                while True:
                    out.write(b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == 28, exc  # ENOSPC


WRITES = [
    ("POST", "remotes/", {**REMOTE, "name": "new"}),
    ("PATCH", "remotes/hub/", {"download_concurrency": 2}),
    ("PUT", "remotes/hub/", {**REMOTE, "download_concurrency": 3}),
    ("POST", "repositories/", {"name": "new"}),
    ("PATCH", "repositories/r/", {"description": "changed"}),
    ("POST", "distributions/", {"name": "new", "base_path": "new", "repository": "r"}),
    ("PATCH", "distributions/d/", {"private": True}),
    ("POST", "repositories/r/sync/", {"remote": "hub"}),
    ("DELETE", "distributions/d/", None),
    ("DELETE", "repositories/r/", None),
    ("DELETE", "remotes/hub/", None),
]


def test_every_write_on_a_full_disk_is_507_and_changes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_lazyreg(data, prefix=_on_small_tmpfs("16m"))
    try:
        server.ok("POST", "remotes/", REMOTE)
        server.ok("POST", "repositories/", {"name": "r"})
        server.ok("POST", "distributions/", {"name": "d", "base_path": "d", "repository": "r"})
        before = {p: server.ok("GET", p) for p in ("remotes/", "repositories/", "distributions/")}
        # The server's view of its data directory: the tmpfs, seen through its own root.
        filler = Path(f"/proc/{server.proc.pid}/root{data}/filler")
        _fill(filler)
        for method, path, body in WRITES:
            status, answer = server.api(method, path, body)
            assert status == 507, (method, path, status, answer)
            assert "disk" in answer["detail"] and "full" in answer["detail"], answer
        # Reads go on, and show that nothing changed.
        for path, page in before.items():
            assert server.ok("GET", path) == page
        assert server.ok("GET", "tasks/")["count"] == 0
        filler.unlink()
        server.ok("POST", "remotes/", {**REMOTE, "name": "after"})  # and writes come back
    finally:
        server.stop()
    log = server.logfile.read_text()
    assert "Traceback" not in log, log[-5000:]
    assert log.count("the disk is full") == len(WRITES)


# ------------------------------------------------------------------ slow and idle clients

async def _drip(port: int, request: bytes) -> float:
    """Send `request` one byte a second; the seconds until the server hangs up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        for byte in request:
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                # Paces the drip; an answer (EOF) ends it.
                if await asyncio.wait_for(reader.read(1024), timeout=1.0) == b"":
                    break
            except TimeoutError:
                continue
    except ConnectionError:
        pass
    finally:
        writer.close()
    return time.monotonic() - started


async def _idle(port: int) -> float:
    """Open a connection and send nothing; the seconds until the server hangs up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        assert await asyncio.wait_for(reader.read(), timeout=IDLE_TIMEOUT + 10) == b""
    finally:
        writer.close()
    return time.monotonic() - started


async def test_slow_and_idle_connections_are_cut(lazyreg: Lazyreg) -> None:
    port = int(lazyreg.url.rsplit(":", 1)[1])
    head = (b"GET /api/v1/status/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 100
            + b"\r\n\r\n")
    slow = [asyncio.create_task(_drip(port, head)) for _ in range(20)]
    idle = [asyncio.create_task(_idle(port)) for _ in range(5)]
    # Meanwhile the server answers everyone else at once.
    for _ in range(5):
        status, _body = await asyncio.to_thread(lazyreg.api, "GET", "status/")
        assert status == 200
    held = await asyncio.gather(*slow, *idle)
    assert all(IDLE_TIMEOUT - 1 <= seconds <= IDLE_TIMEOUT + 5 for seconds in held), held


def test_oversized_headers_are_refused(lazyreg: Lazyreg) -> None:
    port = int(lazyreg.url.rsplit(":", 1)[1])
    for head in (b"GET /api/v1/status/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 9000,
                 b"GET /api/v1/status/?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1",
                 b"GET /api/v1/status/ HTTP/1.1\r\n" + b"X-H: 1\r\n" * 200 + b"Host: 127.0.0.1"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(head + b"\r\n\r\n")
            status_line = sock.recv(100).split(b"\r\n")[0]
            assert status_line.split(b" ")[1] == b"400", status_line
    assert lazyreg.api("GET", "status/")[0] == 200
    assert "Traceback" not in lazyreg.logfile.read_text()
