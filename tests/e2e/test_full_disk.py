"""A lazy pull bigger than the disk's free space: the client still gets every verified byte
(relayed, as `streamed` does), no partial file stays, the server goes on serving, and
`lazyreg check` finds storage and database in agreement.

The server's data directory is a small tmpfs in a mount namespace of its own
(`test_bad_input._on_small_tmpfs`), so the disk really fills up.
"""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.test_bad_input import _on_small_tmpfs
from tests.rig import Upstream, start_lazyreg

pytestmark = pytest.mark.e2e


def _pull(url: str) -> tuple[int, str]:
    """(bytes, sha256 digest) of a blob GET, read in pieces as a client does."""
    h, size = hashlib.sha256(), 0
    with urllib.request.urlopen(url, timeout=120) as resp:
        assert resp.status == 200
        while chunk := resp.read(1024 * 1024):
            h.update(chunk)
            size += len(chunk)
    return size, f"sha256:{h.hexdigest()}"


def test_a_lazy_pull_bigger_than_the_free_space_is_relayed_and_leaves_nothing(
        tmp_path: Path, upstream: Upstream) -> None:
    data = tmp_path / "data"
    server = start_lazyreg(data, prefix=_on_small_tmpfs("24m"))
    try:
        server.setup_mirror(upstream, "big", "fixtures/big")
        layer = upstream.tag("fixtures/big", "latest")["layers"][0]
        digest, size = layer["digest"], int(layer["size"])
        assert size > 48 * 1024 * 1024  # far more than the disk has free
        url = f"{server.url}/v2/big/blobs/{digest}"

        assert _pull(url) == (size, digest)  # every byte, verified: relayed

        # The server's view of its data directory: the tmpfs, through its own root.
        storage = Path(f"/proc/{server.proc.pid}/root{data}/storage")
        assert [p for p in (storage / "tmp").rglob("*") if p.is_file()] == []  # no partial file
        assert not (storage / "sha256" / digest[7:9] / digest[7:]).exists()
        assert digest not in server.artifact_digests()
        assert server.ok("GET", "check/")["ok"]
        # It goes on serving: the same blob again (relayed again), and the API.
        assert _pull(url) == (size, digest)
        assert server.ok("GET", "repositories/big/")["name"] == "big"
        assert server.ok("GET", "check/")["ok"]
    finally:
        server.stop()
    log = server.logfile.read_text()
    assert "Traceback" not in log, log[-5000:]
    assert "cannot be stored" in log
