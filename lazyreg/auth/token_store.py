"""The rows of live API and refresh tokens: kept at minting, listed, revoked.

A token's row is what lets it stand (`lazyreg.auth.accounts`); its JWT is
never stored. Revoking a token revokes the tokens minted with it, and theirs.
An account holds at most `MAX_TOKENS_PER_ACCOUNT` live tokens: expired rows
are dropped when it mints, and past the bound minting is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from lazyreg.auth.accounts import MAX_TOKENS_PER_ACCOUNT, TokenRevoked
from lazyreg.auth.tokens import Issued
from lazyreg.db.models import ApiToken, User
from lazyreg.errors import Conflict


@dataclass(frozen=True)
class TokenRow:
    id: str
    username: str
    kind: str
    parent: str | None
    created: datetime
    expires: datetime


def keep(session: Session, account: int, generation: int, issued: Issued, kind: str,
         parent: str | None) -> None:
    """Record a token just minted, if the account still is as its caller saw it."""
    user = session.get(User, account)
    if user is None or user.token_generation != generation:
        raise TokenRevoked("token revoked: the account changed while the token was minted")
    now = datetime.now(UTC)
    session.execute(delete(ApiToken).where(ApiToken.user_id == account,
                                           ApiToken.expires < now))
    live = list(session.scalars(select(ApiToken.id).where(ApiToken.user_id == account)))
    if parent is not None and parent not in live:
        raise TokenRevoked("token revoked")
    if len(live) >= MAX_TOKENS_PER_ACCOUNT:
        raise Conflict(f"user {user.username!r} holds {len(live)} live tokens, the most"
                       " allowed: revoke some (lazyreg token revoke)")
    session.add(ApiToken(id=issued.id, user_id=account, kind=kind, parent=parent,
                         created=datetime.fromtimestamp(issued.issued_at, UTC),
                         expires=issued.expires_at))


def listed(session: Session, account: int | None, limit: int, offset: int
           ) -> tuple[int, list[TokenRow]]:
    """Live tokens of `account` (None: everyone's), newest first; and how many in all."""
    query = (select(ApiToken, User.username).join(User, User.id == ApiToken.user_id)
             .where(ApiToken.expires >= datetime.now(UTC)))
    if account is not None:
        query = query.where(ApiToken.user_id == account)
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.execute(query.order_by(ApiToken.created.desc(), ApiToken.id)
                           .limit(limit).offset(offset)).all()
    return count, [TokenRow(t.id, name, t.kind, t.parent, t.created, t.expires)
                   for t, name in rows]


def revoke(session: Session, token_id: str, account: int | None) -> int | None:
    """Remove the token (if `account` holds it, or anyone does with None) and what was
    minted with it; the account it belonged to, or None when there was no such token."""
    row = session.get(ApiToken, token_id)
    if row is None or (account is not None and row.user_id != account):
        return None
    children: dict[str | None, list[str]] = {}
    for tid, parent in session.execute(select(ApiToken.id, ApiToken.parent)
                                       .where(ApiToken.user_id == row.user_id)):
        children.setdefault(parent, []).append(tid)
    doomed, todo = set(), [token_id]
    while todo:  # bounded: an account holds at most MAX_TOKENS_PER_ACCOUNT rows
        tid = todo.pop()
        if tid not in doomed:
            doomed.add(tid)
            todo.extend(children.get(tid, []))
    session.execute(delete(ApiToken).where(ApiToken.id.in_(doomed)))
    return row.user_id
