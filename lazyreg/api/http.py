"""Reading requests and writing responses, shared by every resource module."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lazyreg.api.limits import MAX_INT, MAX_INT_DIGITS
from lazyreg.bodies import read_body
from lazyreg.db import changes
from lazyreg.errors import ApiError, Conflict, InvalidField
from lazyreg.state import state

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

# ASCII digits only: int() also takes "²"-free Unicode digits, "1_000" and spaces.
_INTEGER = re.compile(rf"-?[0-9]{{1,{MAX_INT_DIGITS}}}")
_DIGITS = re.compile(r"-?[0-9]+")
# The change-feed generation a management write published (for a DELETE to wait on).
PUBLISHED = web.RequestKey("published_generation", int)


async def read(request: web.Request, fn: Callable[[Session], T]) -> T:
    return await state(request).services.db.read(fn)


async def write(request: web.Request, fn: Callable[[Session], T]) -> T:
    """`fn` in a write transaction that also publishes the change to the caches of every
    process (`lazyreg.db.changes`); its generation is kept in `request[PUBLISHED]`."""
    def run(session: Session) -> tuple[T, int]:
        result = fn(session)
        return result, changes.publish(session, list(changes.MANAGEMENT))
    try:
        result, generation = await state(request).services.db.write(run)
    except IntegrityError as exc:
        # The checks in `fn` saw no duplicate, but a concurrent request committed one.
        raise Conflict("conflicts with a resource created meanwhile; retry") from exc
    request[PUBLISHED] = generation
    return result


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body, which must be a JSON object of at most `MAX_BODY_BYTES`."""
    raw = await read_body(request, state(request).services.settings.body_timeout)
    try:
        body = json.loads(raw) if raw.strip() else None
    except (ValueError, RecursionError):
        # RecursionError: 200,000 nested "[" exhaust the decoder's stack.
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


def parse_int(name: str, raw: str, minimum: int = 0, maximum: int = MAX_INT) -> int:
    """`raw` as a decimal integer in [minimum, maximum], else a 400 naming `name`."""
    if not _INTEGER.fullmatch(raw):
        if _DIGITS.fullmatch(raw) and not raw.startswith("-"):
            raise InvalidField(name, f"must be at most {maximum}")
        shown = raw if len(raw) <= 40 else raw[:40] + "…"
        raise InvalidField(name, f"must be an integer, not {shown!r}")
    value = int(raw)
    if value < minimum:
        raise InvalidField(name, f"must be at least {minimum}")
    if value > maximum:
        raise InvalidField(name, f"must be at most {maximum}")
    return value


def query_value(request: web.Request, name: str) -> str | None:
    """A query parameter given at most once; empty counts as absent."""
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise InvalidField(name, "given more than once")
    return values[0] if values and values[0] != "" else None


def query_int(request: web.Request, name: str, default: int | None = None,
              minimum: int = 0, maximum: int = MAX_INT) -> int | None:
    raw = query_value(request, name)
    if raw is None:
        return default
    return parse_int(name, raw, minimum, maximum)


def query_choice(request: web.Request, name: str, choices: tuple[str, ...]) -> str | None:
    raw = query_value(request, name)
    if raw is None:
        return None
    if raw not in choices:
        raise InvalidField(name, f"must be one of {', '.join(choices)}")
    return raw


def path_name(request: web.Request, key: str = "name") -> str:
    return request.match_info[key]
