"""Blob reads real clients and peers check: ETag and If-None-Match, and Range answers that are
the same whether the blob is stored or still being fetched.
"""

from __future__ import annotations

import hashlib
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.expect import layers
from tests.rig import FaultProxy, Lazyreg, Upstream

pytestmark = pytest.mark.e2e

BLOB_GET = r"^/v2/.+/blobs/sha256:"


@pytest.fixture
def faults(upstream: Upstream, tmp_path: Path) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream.url, tmp_path / "faults.log")
    yield proxy
    proxy.stop()


def get(url: str, headers: dict[str, str] | None = None, method: str = "GET"
        ) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def wait_stored(server: Lazyreg, digest: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while digest not in server.artifact_digests():
        assert time.monotonic() < deadline, f"{digest} was not stored within {timeout}s"
        time.sleep(0.05)


def test_etag_and_if_none_match_stored_or_not(lazyreg: Lazyreg, upstream: Upstream) -> None:
    lazyreg.setup_mirror(upstream, "mirror", "fixtures/small")
    layer = sorted(layers(upstream.tag("fixtures/small", "v1")))[0]
    url = f"{lazyreg.url}/v2/mirror/blobs/{layer}"
    etag = f'"{layer}"'

    mark = upstream.mark()
    status, headers, _ = get(url, method="HEAD")
    assert (status, headers["ETag"]) == (200, etag)
    for condition in (etag, f"W/{etag}", f'"sha256:{"0" * 64}", {etag}', "*"):
        status, headers, body = get(url, {"If-None-Match": condition})
        assert (status, headers["ETag"], body) == (304, etag, b"")
    status, _, _ = get(url, {"If-None-Match": f'"sha256:{"0" * 64}"'}, method="HEAD")
    assert status == 200
    assert upstream.count("GET", BLOB_GET, since=mark) == 0  # a 304 fetches nothing
    assert layer not in lazyreg.artifact_digests()

    status, headers, body = get(url)
    assert (status, headers["ETag"]) == (200, etag)
    wait_stored(lazyreg, layer)
    for method in ("GET", "HEAD"):
        status, headers, _ = get(url, method=method)
        assert (status, headers["ETag"]) == (200, etag)  # not aiohttp's own ETag
        status, headers, body = get(url, {"If-None-Match": etag}, method=method)
        assert (status, headers["ETag"], body) == (304, etag, b"")


def range_table(size: int) -> list[str | None]:
    return [
        None, "bytes=0-9", "bytes=10-19", f"bytes={size - 100}-", "bytes=-100",
        f"bytes=0-{size * 2}", "bytes=0-1,5-6", "bytes=9-3", "items=0-1", "bytes=abc",
        f"bytes={size}-", f"bytes={size + 100}-{size + 200}", "bytes=-0",
        "bytes=" + "9" * 5000 + "-",
    ]


Answer = tuple[int, str | None, object]


def answer(url: str, header: str | None) -> Answer:
    """(status, Content-Range, body): the body itself when short, else its digest and size."""
    req = urllib.request.Request(url, headers={"Range": header} if header else {})
    try:
        resp = urllib.request.urlopen(req, timeout=120)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Range"), exc.read()
    with resp:
        h, size, head = hashlib.sha256(), 0, b""
        while chunk := resp.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
            head = head or chunk[:1000]
        body: object = head if size <= 1000 else ("sha256:" + h.hexdigest(), size)
        return resp.status, resp.headers.get("Content-Range"), body


def answers(url: str, table: list[str | None]) -> list[Answer]:
    with ThreadPoolExecutor(len(table)) as pool:
        return list(pool.map(lambda header: answer(url, header), table))


def test_range_answers_are_the_same_stored_and_in_flight(
        lazyreg: Lazyreg, upstream: Upstream, faults: FaultProxy) -> None:
    lazyreg.ok("POST", "remotes/", {"name": "mirror", "url": faults.url,
                                    "upstream_name": "fixtures/big"})
    lazyreg.ok("POST", "repositories/", {"name": "mirror"})
    lazyreg.ok("POST", "distributions/", {"name": "mirror", "base_path": "mirror",
                                          "repository": "mirror"})
    assert lazyreg.sync("mirror", "mirror")["state"] == "completed"
    layer = next(iter(layers(upstream.tag("fixtures/big", "latest"))))
    size = upstream.index["blobs"][layer]  # 64 MiB
    url = f"{lazyreg.url}/v2/mirror/blobs/{layer}"
    table = range_table(size)

    faults.configure(rate_kib=16 * 1024, reset=True)  # about 4 s: it stays in flight
    mark = upstream.mark()
    with ThreadPoolExecutor(1) as first_client:
        started = first_client.submit(answer, url, None)
        staging = lazyreg.data_dir / "storage" / "tmp"
        deadline = time.monotonic() + 30
        while not any(p.stat().st_size > 1000 for p in staging.rglob("*.part")):
            assert time.monotonic() < deadline, "the download did not start"
            time.sleep(0.02)
        assert layer not in lazyreg.artifact_digests()
        in_flight = answers(url, table)
        assert started.result() == (200, None, (layer, size))
    assert upstream.count("GET", BLOB_GET, since=mark) == 1  # all of them, from one download

    wait_stored(lazyreg, layer)
    faults.configure(rate_kib=0)
    stored = answers(url, table)
    assert upstream.count("GET", BLOB_GET, since=mark) == 1
    for header, fetching, from_storage in zip(table, in_flight, stored, strict=True):
        assert fetching == from_storage, header[:40] if header else header
    whole = stored[0]
    assert whole == (200, None, (layer, size))
    got = {header[:20] if header else header: (status, content_range)
           for header, (status, content_range, _) in zip(table, stored, strict=True)}
    assert got == {
        None: (200, None), "bytes=0-9": (206, f"bytes 0-9/{size}"),
        "bytes=10-19": (206, f"bytes 10-19/{size}"),
        f"bytes={size - 100}-": (206, f"bytes {size - 100}-{size - 1}/{size}"),
        "bytes=-100": (206, f"bytes {size - 100}-{size - 1}/{size}"),
        f"bytes=0-{size * 2}": (206, f"bytes 0-{size - 1}/{size}"),
        "bytes=0-1,5-6": (200, None), "bytes=9-3": (200, None), "items=0-1": (200, None),
        "bytes=abc": (200, None), f"bytes={size}-": (416, None),
        f"bytes={size + 100}-{size + 200}"[:20]: (416, None), "bytes=-0": (416, None),
        "bytes=99999999999999": (416, None)}
    assert stored[3][2] == stored[4][2]  # the last 100 bytes, asked two ways
    first, second = stored[1][2], stored[2][2]
    assert isinstance(first, bytes) and isinstance(second, bytes)
    assert first + second == answer(url, "bytes=0-19")[2]
