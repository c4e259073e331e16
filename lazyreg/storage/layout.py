"""Where a blob lives in any backend, and the digest algorithms storage verifies.

A blob's key is `<algorithm>/<hex[:2]>/<hex>` (`sha256/ab/ab12…`), the same for
every backend: a filesystem root or an object-store prefix. Storage hashes
with the digest's own algorithm, so it supports exactly the algorithms named
here, whatever the rest of the code accepts.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hashlib import _Hash

# algorithm -> length of its hex encoding (OCI image-spec's registered algorithms)
ALGORITHMS = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"[a-f0-9]+")


class UnsupportedDigest(ValueError):
    """Not `<algorithm>:<hex>` with an algorithm storage can verify."""


def split_digest(digest: str) -> tuple[str, str]:
    """(algorithm, hex) of a digest storage can verify, else UnsupportedDigest."""
    algorithm, sep, hex_ = digest.partition(":")
    if not sep or ALGORITHMS.get(algorithm) != len(hex_) or not _HEX.fullmatch(hex_):
        raise UnsupportedDigest(
            f"invalid digest {digest!r}: expected sha256:<64 hex> or sha512:<128 hex>")
    return algorithm, hex_


def is_supported(digest: str) -> bool:
    try:
        split_digest(digest)
    except UnsupportedDigest:
        return False
    return True


def blob_key(digest: str) -> str:
    algorithm, hex_ = split_digest(digest)
    return f"{algorithm}/{hex_[:2]}/{hex_}"


def new_hash(digest: str) -> _Hash:
    """A fresh hash object of the digest's algorithm."""
    return hashlib.new(split_digest(digest)[0])


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
