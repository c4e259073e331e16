"""`tokens/`: a bearer token for the API, for the user who asks (Basic or token)."""

from __future__ import annotations

from aiohttp import web

from lazyreg.api.access import identity
from lazyreg.api.http import json_object, respond
from lazyreg.api.schemas import TokenIn, TokenOut
from lazyreg.errors import ApiError
from lazyreg.state import state


async def create(request: web.Request) -> web.Response:
    raw = await request.read()
    body = TokenIn.model_validate(await json_object(request) if raw.strip() else {})
    who = identity(request)
    if who is None:
        raise ApiError("this server runs with --auth off: the API needs no token")
    token, expires = state(request).auth.api_token(who, body.expires_in)
    return respond(TokenOut(token=token, expires=expires), status=201)
