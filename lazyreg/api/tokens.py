"""`tokens/`: bearer tokens for the API: minted for the user who asks (Basic or
token), listed, and revoked.

A user sees and revokes their own tokens; an admin anyone's (`?user=` narrows
the list). A token that is not the caller's is "not found" to a viewer, as
if it did not exist. With auth off there are no tokens to mint, but the list
and revoke still work (a server may be switched back).
"""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from lazyreg.api import paging
from lazyreg.api.access import identity
from lazyreg.api.http import json_object, no_content, path_name, query_value, read, respond, write
from lazyreg.api.schemas import Page, TokenIn, TokenInfo, TokenOut
from lazyreg.auth import token_store
from lazyreg.auth.service import AuthFailed
from lazyreg.db.models import User
from lazyreg.errors import ApiError, NotFound, Unauthorized
from lazyreg.state import state

MAX_TOKEN_ID_LENGTH = 32


async def create(request: web.Request) -> web.Response:
    raw = await request.read()
    body = TokenIn.model_validate(await json_object(request) if raw.strip() else {})
    who = identity(request)
    if who is None:
        raise ApiError("this server runs with --auth off: the API needs no token")
    try:
        issued = await state(request).auth.mint(who, body.expires_in)
    except AuthFailed as exc:
        raise Unauthorized(str(exc), 'Bearer realm="lazyreg", Basic realm="lazyreg"') from None
    return respond(TokenOut(token=issued.token, id=issued.id, expires=issued.expires_at),
                   status=201)


def _scope(request: web.Request, session: Session) -> int | None:
    """Whose tokens the caller reaches: an account id, or None for everyone's."""
    who = identity(request)
    wanted = query_value(request, "user")
    if who is not None and not who.is_admin:
        if wanted is not None and wanted != who.username:
            raise NotFound("user", wanted)
        return who.account
    if wanted is None:
        return None
    account = session.scalar(select(User.id).where(User.username == wanted))
    if account is None:
        raise NotFound("user", wanted)
    return account


async def list_(request: web.Request) -> web.Response:
    window = paging.Window.of(request)

    def query(session: Session) -> tuple[int, list[TokenInfo]]:
        count, rows = token_store.listed(session, _scope(request, session), window.limit,
                                         window.offset)
        return count, [TokenInfo.model_validate(row, from_attributes=True) for row in rows]
    count, results = await read(request, query)
    return respond(Page[TokenInfo](**paging.envelope(request, window, count), results=results))


async def revoke(request: web.Request) -> web.Response:
    token_id = path_name(request, "id")
    who = identity(request)
    mine = who.account if who is not None and not who.is_admin else None

    def remove(session: Session) -> int | None:
        if len(token_id) > MAX_TOKEN_ID_LENGTH:
            return None
        return token_store.revoke(session, token_id, mine)
    account = await write(request, remove)
    if account is None:
        raise NotFound("token", token_id[:MAX_TOKEN_ID_LENGTH])
    state(request).auth.invalidate_account(account)
    return no_content()
