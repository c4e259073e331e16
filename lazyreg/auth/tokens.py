"""The JWTs lazyreg issues: registry tokens (docker token protocol) and API tokens.

Both are HS256, signed with the key derived from the secret key, and carry
`iss`, `aud`, `sub`, `iat`, `nbf`, `exp` and a random `jti`. The audience
keeps the two kinds apart: a registry token does not open the API, an API
token does not open a private distribution. Reading a token checks the
signature with HS256 only (so `alg: none` and other algorithms are refused),
the expiry, the audience and the issuer, and the shape of every claim used.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

ISSUER = "lazyreg"
SERVICE = "lazyreg"  # the registry's `service` in the token protocol, and its audience
API_AUDIENCE = "lazyreg-api"
ALGORITHM = "HS256"
MAX_TOKEN_LENGTH = 8192
MAX_ACCESS_ENTRIES = 32
LEEWAY = 5  # seconds of clock skew tolerated between servers


class InvalidToken(Exception):
    """Unreadable, forged, expired or of the wrong kind; the message says which."""


@dataclass(frozen=True)
class Access:
    """One resource-scoped grant: `repository:<name>:pull`."""

    type: str
    name: str
    actions: tuple[str, ...]

    def scope(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


@dataclass(frozen=True)
class RegistryClaims:
    subject: str  # "" for an anonymous token
    access: tuple[Access, ...]

    def allows(self, name: str, action: str = "pull") -> bool:
        return any(a.type == "repository" and a.name == name and action in a.actions
                   for a in self.access)


def _encode(key: bytes, audience: str, subject: str, ttl: int,
            extra: dict[str, Any]) -> tuple[str, int]:
    import jwt  # with auth on only: PyJWT loads `cryptography` (memory every worker pays)

    now = int(time.time())
    claims = {"iss": ISSUER, "aud": audience, "sub": subject, "iat": now, "nbf": now,
              "exp": now + ttl, "jti": secrets.token_hex(12), **extra}
    return jwt.encode(claims, key, algorithm=ALGORITHM), now + ttl


def _decode(key: bytes, token: str, audience: str) -> dict[str, Any]:
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("token missing or too long")
    import jwt  # see _encode

    try:
        claims: dict[str, Any] = jwt.decode(
            token, key, algorithms=[ALGORITHM], audience=audience, issuer=ISSUER,
            leeway=LEEWAY, options={"require": ["exp", "iat", "nbf", "sub", "aud", "iss"]})
    except jwt.ExpiredSignatureError:
        raise InvalidToken("token expired") from None
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"invalid token ({type(exc).__name__})") from None
    if not isinstance(claims.get("sub"), str):
        raise InvalidToken("invalid token (subject)")
    return claims


def issue_registry_token(key: bytes, subject: str, access: list[Access],
                         ttl: int) -> tuple[str, int]:
    """A token for exactly `access`; and when it expires (Unix time)."""
    entries = [{"type": a.type, "name": a.name, "actions": list(a.actions)} for a in access]
    return _encode(key, SERVICE, subject, ttl, {"access": entries})


def read_registry_token(key: bytes, token: str) -> RegistryClaims:
    claims = _decode(key, token, SERVICE)
    raw = claims.get("access", [])
    if not isinstance(raw, list) or len(raw) > MAX_ACCESS_ENTRIES:
        raise InvalidToken("invalid token (access)")
    access = []
    for entry in raw:
        if not (isinstance(entry, dict) and isinstance(entry.get("type"), str)
                and isinstance(entry.get("name"), str)
                and isinstance(entry.get("actions"), list)
                and all(isinstance(a, str) for a in entry["actions"])):
            raise InvalidToken("invalid token (access)")
        access.append(Access(entry["type"], entry["name"], tuple(entry["actions"])))
    return RegistryClaims(claims["sub"], tuple(access))


def issue_api_token(key: bytes, username: str, ttl: int) -> tuple[str, datetime]:
    token, expires = _encode(key, API_AUDIENCE, username, ttl, {})
    return token, datetime.fromtimestamp(expires, UTC)


def read_api_token(key: bytes, token: str) -> str:
    """The username the token was issued to."""
    subject: str = _decode(key, token, API_AUDIENCE)["sub"]
    if not subject:
        raise InvalidToken("invalid token (subject)")
    return subject
