"""Password hashing with argon2id, at OWASP's recommended minimum (19 MiB, 2 passes, 1 lane).

Verifying costs 19 MiB and tens of milliseconds on purpose: callers bound how
many run at once. Hashes made with other parameters still verify (they carry
their own). Inputs longer than the limits are refused before hashing.
"""

from __future__ import annotations

import secrets
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from argon2 import PasswordHasher

MAX_PASSWORD_LENGTH = 1024


@cache
def _hasher() -> PasswordHasher:
    # Loaded at the first password: a server that only serves pulls with tokens (or
    # with auth off) never carries argon2 and cffi (2.5 MiB).
    from argon2 import PasswordHasher

    return PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)  # immutable


@cache
def _dummy_hash() -> str:
    """Verified against when the user does not exist, so that timing does not tell."""
    return _hasher().hash("lazyreg: no such user")


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches; with no hash, the same work and False."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return _hasher().verify(password_hash or _dummy_hash(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    return secrets.token_urlsafe(18)
