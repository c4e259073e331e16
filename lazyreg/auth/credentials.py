"""Reading an `Authorization` header: Basic or Bearer, bounded, or a clear refusal."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from lazyreg.auth.passwords import MAX_PASSWORD_LENGTH
from lazyreg.auth.tokens import MAX_TOKEN_LENGTH

MAX_USERNAME_LENGTH = 255
MAX_HEADER_LENGTH = 2 * MAX_TOKEN_LENGTH


class BadCredentials(Exception):
    """A malformed Authorization header; the message says what is wrong with it."""


@dataclass(frozen=True)
class Basic:
    username: str
    password: str


@dataclass(frozen=True)
class Bearer:
    token: str


def parse_authorization(value: str | None) -> Basic | Bearer | None:
    """The credentials in the header; None when there is none."""
    if value is None or not value.strip():
        return None
    if len(value) > MAX_HEADER_LENGTH:
        raise BadCredentials("Authorization header too long")
    scheme, _, rest = value.strip().partition(" ")
    rest = rest.strip()
    if scheme.lower() == "bearer":
        if not rest or len(rest) > MAX_TOKEN_LENGTH or " " in rest:
            raise BadCredentials("malformed Bearer credentials")
        return Bearer(rest)
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(rest, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise BadCredentials("malformed Basic credentials: not base64 of UTF-8") from None
        username, colon, password = decoded.partition(":")
        if not colon or not username:
            raise BadCredentials("malformed Basic credentials: expected username:password")
        if len(username) > MAX_USERNAME_LENGTH or len(password) > MAX_PASSWORD_LENGTH:
            raise BadCredentials("username or password too long")
        return Basic(username, password)
    raise BadCredentials("unsupported authorization scheme: use Basic or Bearer")
