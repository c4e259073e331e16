"""Whether a token still stands: its account, generation and (for API and refresh
tokens) its row, checked against a small in-memory cache.

A token names its account by id and carries the account's token generation
(`lazyreg.auth.tokens`). It stands while the account exists, has that
generation, and (API and refresh tokens) still has the token's row in
`api_tokens`. A password change, a role change or a delete bumps or removes
the account, a revoke removes rows: `AccountCache.invalidate(account_id)` is
called by the code that did it, so that the next request on this process
reads the account again. Another process sees the change when its entry
expires (`ACCOUNT_TTL`), or at once when the cross-node invalidation calls
`invalidate` there too.

A cached entry is reloaded before a refusal it might be wrong about: a token
newer than the entry (minted on another node since) or of a newer generation.
A load that began before an invalidation is not kept (the epoch check), so a
revoked token cannot come back through a read that raced the revoke.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from lazyreg.auth.policy import Identity, Role
from lazyreg.auth.tokens import LEEWAY
from lazyreg.db.engine import Database
from lazyreg.db.models import ApiToken, User

MAX_CACHED_ACCOUNTS = 1024
ACCOUNT_TTL = 10.0  # seconds another node's change can go unseen without coherence
MAX_TOKENS_PER_ACCOUNT = 100  # live API and refresh tokens an account may hold


@dataclass(frozen=True)
class Account:
    id: int
    username: str
    role: Role
    generation: int
    tokens: frozenset[str]  # ids of its live API and refresh tokens
    loaded: float  # Unix time of the read

    def identity(self, token_id: str | None = None,
                 token_expires: int | None = None) -> Identity:
        return Identity(self.username, self.role, self.id, self.generation, token_id,
                        token_expires)


def load_account(session: Session, account_id: int) -> Account | None:
    loaded = time.time()
    user = session.get(User, account_id)
    if user is None:
        return None
    ids = session.scalars(select(ApiToken.id).where(ApiToken.user_id == account_id)
                          .limit(MAX_TOKENS_PER_ACCOUNT * 2))
    return Account(user.id, user.username, cast(Role, user.role), user.token_generation,
                   frozenset(ids), loaded)


def end_tokens(session: Session, user: User) -> None:
    """Every token issued to `user` so far stops working (password or role change)."""
    user.token_generation += 1
    session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))


class TokenRevoked(Exception):
    """The token was valid once; the message says what ended it."""


class AccountCache:
    def __init__(self, db: Database, max_entries: int = MAX_CACHED_ACCOUNTS,
                 ttl: float = ACCOUNT_TTL, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.db = db
        self.max_entries = max_entries
        self.ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[int, tuple[float, Account | None]] = OrderedDict()
        self._epoch = 0  # bumped by every invalidation
        # account id -> (epoch, the read in flight); at most one per account
        self._flights: dict[int, tuple[int, asyncio.Future[Account | None]]] = {}

    def invalidate(self, account_id: int | None = None) -> None:
        """Forget one account (None: all); the next check reads the database."""
        self._epoch += 1
        if account_id is None:
            self._entries.clear()
        else:
            self._entries.pop(account_id, None)

    def _cached(self, account_id: int) -> tuple[bool, Account | None]:
        entry = self._entries.get(account_id)
        if entry is None or entry[0] < self._clock():
            return False, None
        self._entries.move_to_end(account_id)
        return True, entry[1]

    async def _load(self, account_id: int) -> Account | None:
        """One database read per account at a time: the requests that miss together
        share it, unless an invalidation came since it began."""
        flight = self._flights.get(account_id)
        if flight is not None and flight[0] == self._epoch:
            return await asyncio.shield(flight[1])
        epoch = self._epoch
        task = asyncio.ensure_future(self.db.read(lambda s: load_account(s, account_id)))
        self._flights[account_id] = (epoch, task)
        try:
            account = await asyncio.shield(task)
        finally:
            if self._flights.get(account_id, (0, None))[1] is task:
                del self._flights[account_id]
        if epoch == self._epoch:
            self._entries[account_id] = (self._clock() + self.ttl, account)
            self._entries.move_to_end(account_id)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return account

    async def check(self, account_id: int, generation: int, token_id: str | None = None,
                    issued_at: int = 0) -> Account:
        """The account, if a token of `generation` (and id `token_id`) still stands;
        else TokenRevoked."""
        found, account = self._cached(account_id)
        if not found or (account is not None and _maybe_stale(account, generation,
                                                               token_id, issued_at)):
            account = await self._load(account_id)
        if account is None:
            raise TokenRevoked("token revoked: its account no longer exists")
        if generation != account.generation:
            raise TokenRevoked("token revoked: the account's password or role changed"
                               " since it was issued")
        if token_id is not None and token_id not in account.tokens:
            raise TokenRevoked("token revoked")
        return account


def _maybe_stale(account: Account, generation: int, token_id: str | None,
                 issued_at: int) -> bool:
    if generation > account.generation:
        return True
    return (token_id is not None and token_id not in account.tokens
            and issued_at + LEEWAY >= account.loaded)
