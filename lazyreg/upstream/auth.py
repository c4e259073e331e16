"""Registry auth as a flow: send, read the 401 challenge, get credentials, send again.

Bearer tokens are cached per scope (one cache per remote) until shortly before
they expire; a 401 despite a cached token drops it and fetches a new one.
"""

from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass, field

_PARAM_RE = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" or "bearer"
    params: dict[str, str]


def parse_www_authenticate(header: str) -> Challenge | None:
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
              for m in _PARAM_RE.finditer(rest)}
    return Challenge(scheme.lower(), params)


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@dataclass
class TokenCache:
    """Bearer tokens of one remote, by scope."""

    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    # Remembered after the first challenge, so later requests skip the 401 round trip.
    scheme: str | None = None

    def get(self, scope: str) -> str | None:
        entry = self.tokens.get(scope)
        if entry and entry[1] > time.monotonic():
            return entry[0]
        return None

    def put(self, scope: str, token: str, expires_in: float) -> None:
        # Renew a little early so that a token does not expire mid-request.
        margin = min(30.0, expires_in / 10)
        self.tokens[scope] = (token, time.monotonic() + max(expires_in - margin, 1.0))

    def drop(self, scope: str) -> None:
        self.tokens.pop(scope, None)
