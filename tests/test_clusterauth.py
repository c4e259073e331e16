"""Peer signatures (lazyreg.clusterauth) and the cluster settings that refuse to start."""

from __future__ import annotations

from pathlib import Path

import pytest

from lazyreg.clusterauth import SKEW, sign, verify
from lazyreg.config import Settings, cluster_refusal, parse_listen

SECRET = "sixteen-chars-or-more"
PATH = "/_cluster/blobs/sha256:" + "a" * 64


def test_a_signature_is_for_one_secret_method_path_and_minute() -> None:
    header = sign(SECRET, "GET", PATH, now=1000)
    assert verify(SECRET, header, "GET", PATH, now=1000)
    assert verify(SECRET, header, "GET", PATH, now=1000 + SKEW)
    assert not verify(SECRET, header, "GET", PATH, now=1000 + SKEW + 1)
    assert not verify(SECRET, header, "GET", PATH, now=1000 - SKEW - 1)
    assert not verify("another-secret-of-ours", header, "GET", PATH, now=1000)
    assert not verify(SECRET, header, "HEAD", PATH, now=1000)
    assert not verify(SECRET, header, "GET", PATH + "/progress", now=1000)


@pytest.mark.parametrize("header", [None, "", "x", "1000", ":", "1000:", "abc:def",
                                    "1000:" + "0" * 64, "1" * 200])
def test_malformed_or_forged_headers_are_refused(header: str | None) -> None:
    assert not verify(SECRET, header, "GET", PATH, now=1000)


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:5001") == ("127.0.0.1", 5001)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("5001", ":5001", "host:", "host:99999", "host:x"):
        with pytest.raises(ValueError):
            parse_listen(bad)


def _settings(**values: str) -> Settings:
    return Settings(data_dir=Path("unused"), **values)  # type: ignore[arg-type]


def test_cluster_settings_refused_with_a_reason() -> None:
    assert cluster_refusal(_settings()) is None
    assert cluster_refusal(_settings(cluster_secret=SECRET,
                                     cluster_listen="127.0.0.1:0")) is None
    assert "cluster_secret" in (cluster_refusal(_settings(cluster_listen="127.0.0.1:1")) or "")
    assert "cluster_listen" in (cluster_refusal(_settings(cluster_secret=SECRET)) or "")
    assert "cluster_url" in (cluster_refusal(_settings(cluster_secret=SECRET,
                                                       cluster_listen="0.0.0.0:5001")) or "")
    assert cluster_refusal(_settings(cluster_secret=SECRET, cluster_listen="0.0.0.0:5001",
                                     cluster_url="http://10.0.0.1:5001")) is None
    assert "HOST:PORT" in (cluster_refusal(_settings(cluster_secret=SECRET,
                                                     cluster_listen="nope")) or "")
