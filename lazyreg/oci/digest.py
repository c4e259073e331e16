"""Content digests: `sha256:<64 hex>` and `sha512:<128 hex>` (OCI image-spec).

Every pattern matches the whole string (`\\Z`, not `$`, which would accept a
trailing newline), whether a caller uses `match` or `fullmatch`.
"""

from __future__ import annotations

import hashlib
import re

# The algorithms lazyreg verifies, with the length of their lowercase hex encoding.
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}

DIGEST_RE = re.compile(r"^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})\Z")
# The spec's general grammar, used to tell "malformed" from "unsupported algorithm".
ANY_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+\Z")


class InvalidDigest(ValueError):
    """A string that is not a digest lazyreg can verify."""


class UnsupportedDigest(InvalidDigest):
    """A well-formed digest whose algorithm lazyreg does not implement."""


def parse_digest(value: str) -> str:
    """Return `value` if it is a valid sha256 or sha512 digest, else raise InvalidDigest."""
    if DIGEST_RE.fullmatch(value):
        return value
    if ANY_DIGEST_RE.fullmatch(value) and value.split(":", 1)[0] not in ALGORITHMS:
        raise UnsupportedDigest(f"unsupported digest algorithm in {value!r}:"
                                " expected sha256 or sha512")
    raise InvalidDigest(f"invalid digest {value!r}: expected sha256:<64 lowercase hex>"
                        " or sha512:<128 lowercase hex>")


def is_valid_digest(value: str) -> bool:
    """A digest lazyreg can verify (sha256 or sha512, well formed)."""
    return bool(DIGEST_RE.fullmatch(value))


def is_digest(value: str) -> bool:
    """Looks like a digest of any algorithm (the spec's grammar)."""
    return bool(ANY_DIGEST_RE.fullmatch(value))


def algorithm(digest: str) -> str:
    return digest.split(":", 1)[0]


def digest_of(data: bytes, algo: str = "sha256") -> str:
    """The digest of `data` with `algo` (sha256 or sha512)."""
    if algo not in ALGORITHMS:
        raise UnsupportedDigest(f"unsupported digest algorithm {algo!r}")
    return f"{algo}:" + hashlib.new(algo, data).hexdigest()


def sha256_digest(data: bytes) -> str:
    return digest_of(data, "sha256")


def matches(data: bytes, digest: str) -> bool:
    """Whether `data` hashes to `digest`, with the digest's own algorithm."""
    return digest_of(data, algorithm(parse_digest(digest))) == digest
