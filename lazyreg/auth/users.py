"""Users in the database: lookup, bootstrap of `admin`, and who may pull what."""

from __future__ import annotations

from typing import cast

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from lazyreg.auth.passwords import hash_password, verify_password
from lazyreg.auth.policy import Identity, PullRule, Role
from lazyreg.db.models import Distribution, DistributionReader, User
from lazyreg.db.routing import serving

ADMIN = "admin"


def identity_of(user: User) -> Identity:
    # The API writes only roles.
    return Identity(user.username, cast(Role, user.role), user.id, user.token_generation)


def find_identity(session: Session, account: int) -> Identity | None:
    user = session.get(User, account)
    return identity_of(user) if user is not None else None


def check_password(session: Session, username: str, password: str) -> Identity | None:
    """The user if the password is theirs. Slow on purpose (argon2), found or not."""
    user = session.scalar(select(User).where(User.username == username))
    if not verify_password(user.password_hash if user else None, password) or user is None:
        return None
    return identity_of(user)


def bootstrap_admin(session: Session, password: str) -> bool:
    """Create `admin` when no user has the admin role; whether it was created.

    (Users made while auth was off may all be viewers.) A viewer already named
    `admin` is left alone, and nothing is created: that is for an operator to sort out.
    """
    if session.scalar(select(User.id).where(User.role == "admin").limit(1)) is not None:
        return False
    if session.scalar(select(User.id).where(User.username == ADMIN)) is not None:
        return False
    session.add(User(username=ADMIN, password_hash=hash_password(password), role="admin"))
    session.flush()
    return True


def readers_of(session: Session, distribution_id: int) -> list[str]:
    return list(session.scalars(
        select(User.username).join(DistributionReader, DistributionReader.user_id == User.id)
        .where(DistributionReader.distribution_id == distribution_id).order_by(User.username)))


def pull_rule(session: Session, name: str) -> PullRule | None:
    """Who may pull `name`: its distribution's rule (by exact base path, else the
    pull-through distribution with the longest base-path prefix); None when none serves it."""
    found = serving(session, name)
    if found is None:
        return None
    dist = found[0]
    readers = frozenset(readers_of(session, dist.id)) if dist.private else frozenset()
    return PullRule(dist.private, readers)


def pullable(identity: Identity | None) -> ColumnElement[bool] | None:
    """Which distributions this identity may pull (None: anonymous), as a condition;
    None when it may pull them all."""
    if identity is not None and identity.is_admin:
        return None
    readable = select(DistributionReader.distribution_id).join(
        User, User.id == DistributionReader.user_id).where(
        User.username == (identity.username if identity else None))
    return Distribution.private.is_(False) | Distribution.id.in_(readable)
