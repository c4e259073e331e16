"""The authenticator the server holds: credentials in, an identity or a refusal out.

Password checks (argon2: memory-hard, tens of milliseconds) run in worker
threads, at most `MAX_CONCURRENT_VERIFICATIONS` at a time, so that a burst of
logins cannot exhaust memory or the thread pool, after the login throttle
admitted them (`lazyreg.auth.throttle`). A token is checked in
process (signature, expiry), then against its account's cached state
(`lazyreg.auth.accounts`): a password change, a role change, a delete or a
revoke ends it at once on this process.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from lazyreg.auth import token_store, tokens
from lazyreg.auth.accounts import AccountCache, TokenRevoked
from lazyreg.auth.credentials import BadCredentials, Basic, Bearer, parse_authorization
from lazyreg.auth.policy import Identity, PullRule, parse_scopes
from lazyreg.auth.policy import grant as grant_scopes
from lazyreg.auth.secrets import SecretBox
from lazyreg.auth.throttle import LoginThrottle
from lazyreg.auth.users import check_password, pull_rule
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
    scopes: tuple[str, ...] = ()
    refresh_token: str | None = None


@dataclass(frozen=True)
class Grant:
    """An OAuth2 token request (`POST /token`): who asks, and how."""

    grant_type: str  # password | refresh_token
    username: str = ""
    password: str = ""
    refresh_token: str = ""
    offline: bool = False  # access_type=offline: also a refresh token


def _holder(identity: Identity) -> tokens.Holder:
    return tokens.Holder(identity.account, identity.generation, identity.username)


@dataclass
class Authenticator:
    settings: Settings
    db: Database
    secrets: SecretBox
    _slots: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(MAX_CONCURRENT_VERIFICATIONS))
    accounts: AccountCache = field(init=False)
    throttle: LoginThrottle = field(init=False)

    def __post_init__(self) -> None:
        self.accounts = AccountCache(self.db)
        self.throttle = LoginThrottle(self.settings.login_max_backoff)

    @property
    def enabled(self) -> bool:
        return self.settings.auth_enabled

    def invalidate_account(self, account: int | None = None) -> None:
        """Forget what this process cached of an account (None: of all): its tokens are
        checked against the database again. For changes made elsewhere (another node)."""
        self.accounts.invalidate(account)

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

    async def _account_token(self, token: str, refresh: bool = False) -> Identity:
        try:
            claims = tokens.read_account_token(self.secrets.signing_key, token,
                                               refresh=refresh)
            account = await self.accounts.check(claims.account, claims.generation, claims.id,
                                                claims.issued_at)
        except (tokens.InvalidToken, TokenRevoked) as exc:
            raise AuthFailed(str(exc)) from None
        return account.identity(claims.id, claims.expires)

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
        return await self._account_token(credentials.token)

    async def registry_claims(self, header: str | None) -> tokens.RegistryClaims | None:
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
            claims = tokens.read_registry_token(self.secrets.signing_key, credentials.token)
            if claims.account is not None:
                await self.accounts.check(claims.account, claims.generation)
        except (tokens.InvalidToken, TokenRevoked) as exc:
            raise AuthFailed(str(exc)) from None
        return claims

    async def _registry_answer(self, identity: Identity | None, scopes: list[str],
                               expires: int | None = None) -> TokenAnswer:
        requested = parse_scopes(scopes)
        names = {a.name for a in requested}

        def rules(session: Session) -> dict[str, PullRule | None]:
            return {name: pull_rule(session, name) for name in names}
        found = await self.db.read(rules) if names else {}
        granted = grant_scopes(requested, identity, found.get)
        issued = tokens.issue_registry_token(
            self.secrets.signing_key, _holder(identity) if identity else None, granted,
            self.settings.registry_token_ttl, expires)
        return TokenAnswer(issued.token, issued.expires - issued.issued_at, issued.issued_at,
                           tuple(a.scope() for a in granted))

    async def registry_token(self, header: str | None, scopes: list[str],
                             offline: bool = False) -> TokenAnswer:
        """The docker token protocol: a token for exactly the granted pull scopes (and,
        with `offline` and credentials, a refresh token, as `docker login` asks).

        Raises AuthFailed for bad credentials and `policy.BadScope` for a bad scope.
        """
        parse_scopes(scopes)  # a bad scope is 400 before any password is checked
        try:
            credentials = parse_authorization(header)
        except BadCredentials as exc:
            raise AuthFailed(str(exc)) from None
        if isinstance(credentials, Bearer):
            raise AuthFailed("the token endpoint takes Basic credentials, or none")
        identity = await self.check_basic(credentials) if credentials else None
        answer = await self._registry_answer(identity, scopes)
        if offline and identity is not None:
            answer.refresh_token = (await self.mint(identity, None, refresh=True)).token
        return answer

    async def oauth_token(self, grant: Grant, scopes: list[str]) -> TokenAnswer:
        """The OAuth2 form of the token server (`POST /token`), as distribution's and
        Docker Hub's: a password or a refresh token in, a registry token out (and,
        for `access_type=offline`, a refresh token). The registry token never
        outlives the refresh token it came from."""
        parse_scopes(scopes)
        if grant.grant_type == "password":
            identity = await self.check_basic(Basic(grant.username, grant.password))
            answer = await self._registry_answer(identity, scopes)
            if grant.offline:
                answer.refresh_token = (await self.mint(identity, None, refresh=True)).token
            return answer
        identity = await self._account_token(grant.refresh_token, refresh=True)
        return await self._registry_answer(identity, scopes, identity.token_expires)

    async def mint(self, identity: Identity, expires_in: int | None,
                   refresh: bool = False) -> tokens.Issued:
        """A new API (or refresh) token for `identity`, kept in `api_tokens`. Minted with
        a token (`identity.token_id`), it expires with that token at the latest, and is
        revoked with it."""
        default = self.settings.api_token_ttl
        ttl = min(expires_in or default, self.settings.api_token_max_ttl)
        issued = tokens.issue_account_token(self.secrets.signing_key, _holder(identity), ttl,
                                            refresh=refresh, expires=identity.token_expires)
        try:
            await self.db.write(lambda s: token_store.keep(
                s, identity.account, identity.generation, issued,
                "refresh" if refresh else "api", identity.token_id))
        except TokenRevoked as exc:
            raise AuthFailed(str(exc)) from None
        finally:
            self.accounts.invalidate(identity.account)
        return issued
