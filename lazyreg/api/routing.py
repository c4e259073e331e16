"""What one API route is: enough to register it and to document it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from pydantic import BaseModel

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PREFIX = "/api/v1"


@dataclass(frozen=True)
class Query:
    name: str
    type: Literal["string", "integer", "boolean"]
    description: str
    minimum: int = 0  # for an integer
    choices: tuple[str, ...] = ()  # for a string: the only values accepted


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    query: tuple[Query, ...] = ()
    # Other success statuses, with the same body (200 for a task already running, say).
    also: tuple[int, ...] = ()


PAGING = (
    Query("limit", "integer", "Page size (default 100; a larger one is capped at 1000)",
          minimum=1),
    Query("offset", "integer", "Index of the first result"),
)
