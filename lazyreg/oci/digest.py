"""Content digests (`sha256:<64 hex>`)."""

from __future__ import annotations

import hashlib
import re

DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
# The spec's general grammar, used to tell "malformed" from "unsupported algorithm".
ANY_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")


class InvalidDigest(ValueError):
    """A string that is not a sha256 digest."""


def parse_digest(value: str) -> str:
    """Return `value` if it is a valid sha256 digest, else raise InvalidDigest."""
    if not DIGEST_RE.fullmatch(value):  # match() lets a trailing newline through
        raise InvalidDigest(f"invalid digest {value!r}: expected sha256:<64 lowercase hex>")
    return value


def is_digest(value: str) -> bool:
    return bool(ANY_DIGEST_RE.match(value))


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
