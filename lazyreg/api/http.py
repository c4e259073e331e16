"""Reading requests and writing responses, shared by every resource module."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lazyreg.errors import ApiError, Conflict, InvalidField
from lazyreg.state import state

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


async def read(request: web.Request, fn: Callable[[Session], T]) -> T:
    return await state(request).services.db.read(fn)


async def write(request: web.Request, fn: Callable[[Session], T]) -> T:
    try:
        return await state(request).services.db.write(fn)
    except IntegrityError as exc:
        # The checks in `fn` saw no duplicate, but a concurrent request committed one.
        raise Conflict("conflicts with a resource created meanwhile; retry") from exc


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body, which must be a JSON object."""
    raw = await request.read()
    try:
        body = json.loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError):
        raise ApiError("invalid JSON body") from None
    if not isinstance(body, dict):
        raise ApiError("the request body must be a JSON object")
    return body


async def parse_body(request: web.Request, model: type[M]) -> M:
    # A ValidationError raised here is rendered as a 400 naming the field.
    return model.model_validate(await json_object(request))


def respond(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(model.model_dump(mode="json"), status=status)


def no_content() -> web.Response:
    return web.Response(status=204)


def query_int(request: web.Request, name: str, default: int | None = None,
              minimum: int = 0) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidField(name, f"must be an integer, not {raw!r}") from None
    if value < minimum:
        raise InvalidField(name, f"must be at least {minimum}")
    return value


def query_choice(request: web.Request, name: str, choices: tuple[str, ...]) -> str | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if raw not in choices:
        raise InvalidField(name, f"must be one of {', '.join(choices)}")
    return raw


def path_name(request: web.Request, key: str = "name") -> str:
    return request.match_info[key]
