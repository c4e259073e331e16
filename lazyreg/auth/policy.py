"""Who may do what: plain decisions, no I/O.

- Management API: reads (GET, HEAD) need a user of any role; writes need an
  admin. Exceptions: any user may ask for, list and revoke tokens of their
  own (`tokens/`; an admin's reach all); user accounts are for admins, except that a user may read
  their own.
- Registry: a public distribution may be pulled by anyone; a private one by
  an admin or a user in its `readers`. The token server grants exactly the
  requested `repository:<name>:pull` scopes that the rule allows, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from lazyreg.auth.tokens import Access

Role = Literal["admin", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "viewer")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_SCOPES = 16
MAX_SCOPE_LENGTH = 512


@dataclass(frozen=True)
class Identity:
    username: str
    role: Role
    account: int = 0  # the user's id
    generation: int = 0  # the user's token generation (lazyreg.auth.accounts)
    token_id: str | None = None  # the API token the request came with, if any
    token_expires: int | None = None  # and when it expires (Unix time)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


Need = Literal["user", "admin"]


def api_need(method: str, path: str, username: str | None = None) -> Need:
    """What an API request needs. `path` is relative to /api/v1, e.g. `remotes/x/`."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["tokens"]:
        return "user"  # a user's own tokens; `lazyreg.api.tokens` keeps them apart
    if parts[:1] == ["users"]:
        own = len(parts) == 2 and username is not None and parts[1] == username
        return "user" if own and method in READ_METHODS else "admin"
    return "user" if method in READ_METHODS else "admin"


def allowed(identity: Identity, need: Need) -> bool:
    return need == "user" or identity.is_admin


@dataclass(frozen=True)
class PullRule:
    """What decides who may pull a distribution."""

    private: bool
    readers: frozenset[str]

    def may_pull(self, identity: Identity | None) -> bool:
        if not self.private:
            return True
        return identity is not None and (identity.is_admin
                                         or identity.username in self.readers)


class BadScope(ValueError):
    pass


def parse_scopes(values: list[str]) -> list[Access]:
    """The `scope` parameters of a token request (each may hold several, space-separated)."""
    scopes = [s for v in values for s in v.split(" ") if s]
    if len(scopes) > MAX_SCOPES:
        raise BadScope(f"too many scopes (at most {MAX_SCOPES})")
    parsed = []
    for scope in scopes:
        if len(scope) > MAX_SCOPE_LENGTH:
            raise BadScope("scope too long")
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if not kind or not name or not actions:
            raise BadScope(f"malformed scope {scope[:100]!r}: expected type:name:actions")
        parsed.append(Access(kind, name, tuple(a for a in actions.split(",") if a)))
    return parsed


def grant(requested: list[Access], identity: Identity | None,
          rule_of: Callable[[str], PullRule | None]) -> list[Access]:
    """The part of `requested` this identity gets: pull of distributions it may pull."""
    granted: dict[str, Access] = {}
    for access in requested:
        if access.type != "repository" or "pull" not in access.actions:
            continue
        rule = rule_of(access.name)
        if rule is not None and rule.may_pull(identity):
            granted[access.name] = Access("repository", access.name, ("pull",))
    return list(granted.values())
