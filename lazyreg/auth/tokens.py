"""The JWTs lazyreg issues: registry tokens (docker token protocol), API tokens,
and refresh tokens (the token server's `access_type=offline`).

All are HS256 (PyJWT), signed with the key derived from the secret key, and
carry `iss`, `aud`, `sub`, `iat`, `nbf`, `exp` and a random `jti`. `sub` is
the account's id (never its name: a user re-created with the same name is
another account), `gen` the account's token generation when the token was
issued (`lazyreg.auth.accounts` refuses a token of an older one), and `name`
the username, for logs only. The audience keeps the kinds apart: a registry
token does not open the API, an API token does not open a private
distribution, a refresh token opens neither. Reading a token checks the
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
REFRESH_AUDIENCE = "lazyreg-refresh"
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
class Holder:
    """Whom a token is issued to: an account, as of its token generation."""

    account: int
    generation: int
    username: str


@dataclass(frozen=True)
class RegistryClaims:
    subject: str  # the account id, "" for an anonymous token
    access: tuple[Access, ...]
    generation: int = 0

    @property
    def account(self) -> int | None:
        return int(self.subject) if self.subject else None

    def allows(self, name: str, action: str = "pull") -> bool:
        return any(a.type == "repository" and a.name == name and action in a.actions
                   for a in self.access)


@dataclass(frozen=True)
class Issued:
    token: str
    id: str  # jti
    issued_at: int
    expires: int  # Unix time

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.expires, UTC)


@dataclass(frozen=True)
class AccountClaims:
    """What an API or refresh token says."""

    account: int
    generation: int
    id: str  # jti
    issued_at: int
    expires: int


def new_token_id() -> str:
    return secrets.token_hex(12)


def _holder_claims(holder: Holder | None) -> tuple[str, dict[str, Any]]:
    if holder is None:
        return "", {}
    return str(holder.account), {"gen": holder.generation, "name": holder.username}


def _encode(key: bytes, audience: str, holder: Holder | None, ttl: int,
            extra: dict[str, Any], expires: int | None = None) -> Issued:
    import jwt  # with auth on only: PyJWT loads `cryptography` (memory every worker pays)

    now = int(time.time())
    exp = now + ttl if expires is None else min(now + ttl, expires)
    subject, more = _holder_claims(holder)
    jti = new_token_id()
    claims = {"iss": ISSUER, "aud": audience, "sub": subject, "iat": now, "nbf": now,
              "exp": exp, "jti": jti, **more, **extra}
    return Issued(jwt.encode(claims, key, algorithm=ALGORITHM), jti, now, exp)


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


def issue_registry_token(key: bytes, holder: Holder | None, access: list[Access],
                         ttl: int, expires: int | None = None) -> Issued:
    """A token for exactly `access`, expiring at `expires` at the latest."""
    entries = [{"type": a.type, "name": a.name, "actions": list(a.actions)} for a in access]
    return _encode(key, SERVICE, holder, ttl, {"access": entries}, expires)


def _generation(claims: dict[str, Any]) -> int:
    gen = claims.get("gen", 0)
    if not isinstance(gen, int) or isinstance(gen, bool) or gen < 0:
        raise InvalidToken("invalid token (generation)")
    return gen


def _account(claims: dict[str, Any]) -> int:
    subject: str = claims["sub"]
    if not subject.isdigit() or len(subject) > 18:
        raise InvalidToken("invalid token (subject)")
    return int(subject)


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
    if claims["sub"]:
        _account(claims)
    return RegistryClaims(claims["sub"], tuple(access), _generation(claims))


def issue_account_token(key: bytes, holder: Holder, ttl: int, *, refresh: bool = False,
                        expires: int | None = None) -> Issued:
    """An API token (or, with `refresh`, a refresh token), expiring at `expires` at the
    latest (a token minted with a token never outlives it)."""
    return _encode(key, REFRESH_AUDIENCE if refresh else API_AUDIENCE, holder, ttl, {},
                   expires)


def read_account_token(key: bytes, token: str, *, refresh: bool = False) -> AccountClaims:
    claims = _decode(key, token, REFRESH_AUDIENCE if refresh else API_AUDIENCE)
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= 32:
        raise InvalidToken("invalid token (id)")
    return AccountClaims(_account(claims), _generation(claims), jti, int(claims["iat"]),
                         int(claims["exp"]))
