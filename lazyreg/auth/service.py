"""The authenticator the server holds: credentials in, an identity or a refusal out.

Password checks (argon2: memory-hard, tens of milliseconds) run in worker
threads, at most `MAX_CONCURRENT_VERIFICATIONS` at a time, so that a burst of
logins cannot exhaust memory or the thread pool, after the login throttle
admitted them (`lazyreg.auth.throttle`). Tokens are checked in
process, without the database, except that an API token's user is looked up
on every request (a deleted user's tokens stop working at once, and a role
change applies at once).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from lazyreg.auth import tokens
from lazyreg.auth.credentials import BadCredentials, Basic, Bearer, parse_authorization
from lazyreg.auth.policy import Identity, PullRule, parse_scopes
from lazyreg.auth.policy import grant as grant_scopes
from lazyreg.auth.secrets import SecretBox
from lazyreg.auth.throttle import LoginThrottle
from lazyreg.auth.users import check_password, find_identity, pull_rule
from lazyreg.config import Settings
from lazyreg.db.engine import Database

MAX_CONCURRENT_VERIFICATIONS = 2


class AuthFailed(Exception):
    """No valid credentials; the message says why (without echoing them)."""


@dataclass
class TokenAnswer:
    token: str
    expires_in: int
    issued_at: int


@dataclass
class Authenticator:
    settings: Settings
    db: Database
    secrets: SecretBox
    _slots: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(MAX_CONCURRENT_VERIFICATIONS))
    throttle: LoginThrottle = field(init=False)

    def __post_init__(self) -> None:
        self.throttle = LoginThrottle(self.settings.login_max_backoff)

    @property
    def enabled(self) -> bool:
        return self.settings.auth_enabled

    async def check_basic(self, basic: Basic) -> Identity:
        """The user, if the password is theirs. Throttled (`lazyreg.auth.throttle`): too
        many failures from the client's address or for the account raise `Throttled`."""
        self.throttle.admit(basic.username, charge=False)  # refused without waiting
        async with self._slots:
            self.throttle.admit(basic.username)
            try:
                identity = await self.db.read(
                    lambda s: check_password(s, basic.username, basic.password))
            except BaseException:
                self.throttle.refund(basic.username)  # not checked: the database failed
                raise
        if identity is None:
            self.throttle.failed(basic.username)
            raise AuthFailed("wrong username or password")
        self.throttle.succeeded(basic.username)
        return identity

    async def api_identity(self, header: str | None) -> Identity:
        """Who sent this management API request (Basic, or an API token)."""
        try:
            credentials = parse_authorization(header)
        except BadCredentials as exc:
            raise AuthFailed(str(exc)) from None
        if credentials is None:
            raise AuthFailed("authentication required")
        if isinstance(credentials, Basic):
            return await self.check_basic(credentials)
        try:
            username = tokens.read_api_token(self.secrets.signing_key, credentials.token)
        except tokens.InvalidToken as exc:
            raise AuthFailed(str(exc)) from None
        identity = await self.db.read(lambda s: find_identity(s, username))
        if identity is None:
            raise AuthFailed("the token's user no longer exists")
        return identity

    def registry_claims(self, header: str | None) -> tokens.RegistryClaims | None:
        """The grants of a registry request's Bearer token; None when it sent none."""
        try:
            credentials = parse_authorization(header)
        except BadCredentials as exc:
            raise AuthFailed(str(exc)) from None
        if credentials is None:
            return None
        if not isinstance(credentials, Bearer):
            raise AuthFailed("the registry takes Bearer tokens from /token")
        try:
            return tokens.read_registry_token(self.secrets.signing_key, credentials.token)
        except tokens.InvalidToken as exc:
            raise AuthFailed(str(exc)) from None

    async def registry_token(self, header: str | None, scopes: list[str]) -> TokenAnswer:
        """The docker token protocol: a token for exactly the granted pull scopes.

        Raises AuthFailed for bad credentials and `policy.BadScope` for a bad scope.
        """
        requested = parse_scopes(scopes)
        try:
            credentials = parse_authorization(header)
        except BadCredentials as exc:
            raise AuthFailed(str(exc)) from None
        if isinstance(credentials, Bearer):
            raise AuthFailed("the token endpoint takes Basic credentials, or none")
        identity = await self.check_basic(credentials) if credentials else None
        names = {a.name for a in requested}

        def rules(session: Session) -> dict[str, PullRule | None]:
            return {name: pull_rule(session, name) for name in names}
        found = await self.db.read(rules) if names else {}
        granted = grant_scopes(requested, identity, found.get)
        ttl = self.settings.registry_token_ttl
        token, expires = tokens.issue_registry_token(
            self.secrets.signing_key, identity.username if identity else "", granted, ttl)
        return TokenAnswer(token, ttl, expires - ttl)

    def api_token(self, identity: Identity, expires_in: int | None) -> tuple[str, datetime]:
        ttl = min(expires_in or self.settings.api_token_ttl, self.settings.api_token_max_ttl)
        return tokens.issue_api_token(self.secrets.signing_key, identity.username, ttl)
