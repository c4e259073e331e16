"""`users/`: who may use the API (by role) and pull private distributions.

Passwords are write-only and stored as argon2 hashes. The last admin cannot
be deleted or demoted, so that the server always has someone to manage it.
A password or role change, and a delete, end every token the user holds
(`lazyreg.auth.accounts`), on this process at once.
"""

from __future__ import annotations

import asyncio
from typing import cast

from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lazyreg.api import paging
from lazyreg.api.http import no_content, parse_body, path_name, read, respond, write
from lazyreg.api.schemas import Page, Role, UserIn, UserOut, UserUpdate
from lazyreg.auth.accounts import end_tokens
from lazyreg.auth.passwords import hash_password
from lazyreg.db.models import User
from lazyreg.errors import Conflict, NotFound
from lazyreg.state import state


def to_out(user: User) -> UserOut:
    return UserOut(username=user.username, role=cast(Role, user.role), created=user.created)


def _load(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound("user", username)
    return user


def _keep_an_admin(session: Session, user: User) -> None:
    admins = session.scalar(select(func.count()).select_from(User).where(User.role == "admin"))
    if user.role == "admin" and admins == 1:
        raise Conflict(f"user {user.username!r} is the last admin", field="role")


async def create(request: web.Request) -> web.Response:
    body = await parse_body(request, UserIn)
    hashed = await asyncio.to_thread(hash_password, body.password)

    def insert(session: Session) -> UserOut:
        if session.scalar(select(User.id).where(User.username == body.username)) is not None:
            raise Conflict(f"user {body.username!r} already exists", field="username")
        user = User(username=body.username, password_hash=hashed, role=body.role)
        session.add(user)
        session.flush()
        return to_out(user)
    return respond(await write(request, insert), status=201)


async def list_(request: web.Request) -> web.Response:
    window = paging.Window.of(request)

    def query(session: Session) -> tuple[int, list[UserOut]]:
        count, rows = paging.fetch(session, select(User).order_by(User.username), window)
        return count, [to_out(row[0]) for row in rows]
    count, results = await read(request, query)
    return respond(Page[UserOut](**paging.envelope(request, window, count), results=results))


async def show(request: web.Request) -> web.Response:
    name = path_name(request)
    return respond(await read(request, lambda s: to_out(_load(s, name))))


async def update(request: web.Request) -> web.Response:
    name = path_name(request)
    body = await parse_body(request, UserUpdate)
    hashed = await asyncio.to_thread(hash_password, body.password) if body.password else None

    def apply(session: Session) -> tuple[int, UserOut]:
        user = _load(session, name)
        changed = hashed is not None
        if body.role is not None and body.role != user.role:
            _keep_an_admin(session, user)
            user.role = body.role
            changed = True
        if hashed is not None:
            user.password_hash = hashed
        if changed:
            end_tokens(session, user)
        session.flush()
        return user.id, to_out(user)
    account, out = await write(request, apply)
    state(request).auth.invalidate_account(account)
    return respond(out)


async def delete(request: web.Request) -> web.Response:
    name = path_name(request)

    def remove(session: Session) -> int:
        user = _load(session, name)
        _keep_an_admin(session, user)
        end_tokens(session, user)
        session.delete(user)
        return user.id
    state(request).auth.invalidate_account(await write(request, remove))
    return no_content()
