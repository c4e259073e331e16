"""Password hashing with argon2id (argon2-cffi's defaults, RFC 9106's low-memory profile).

Verifying costs about 64 MiB and tens of milliseconds on purpose: callers bound
how many run at once. Inputs longer than the limits are refused before hashing.
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MAX_PASSWORD_LENGTH = 1024

_HASHER = PasswordHasher()  # immutable parameters, safe to share
# Verified against when the user does not exist, so that timing does not tell.
_DUMMY_HASH = _HASHER.hash("lazyreg: no such user")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches; with no hash, the same work and False."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    return secrets.token_urlsafe(18)
