"""`?limit=&offset=` paging, and the `{"count", "next", "previous", "results"}` envelope.

`limit` is capped at `MAX_LIMIT`; `limit` and `offset` above `MAX_INT` are a 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVarTuple

from aiohttp import web
from sqlalchemy import Row, Select, func, select
from sqlalchemy.orm import Session

from lazyreg.api.http import query_int
from lazyreg.api.limits import DEFAULT_LIMIT, MAX_LIMIT

Ts = TypeVarTuple("Ts")


@dataclass(frozen=True)
class Window:
    limit: int
    offset: int

    @classmethod
    def of(cls, request: web.Request) -> Window:
        limit = query_int(request, "limit", DEFAULT_LIMIT, minimum=1) or DEFAULT_LIMIT
        offset = query_int(request, "offset", 0) or 0
        # Like Django REST framework: a limit above the maximum is capped, not refused;
        # either number beyond MAX_INT (what any database column holds) is refused.
        return cls(min(limit, MAX_LIMIT), offset)


def fetch(session: Session, stmt: Select[*Ts], window: Window) -> tuple[int, list[Row[*Ts]]]:
    """The total count of `stmt`'s rows, and the rows inside the window."""
    count = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows = list(session.execute(stmt.limit(window.limit).offset(window.offset)).all())
    return count, rows


def links(request: web.Request, window: Window, count: int) -> tuple[str | None, str | None]:
    """Absolute URLs of the next and previous pages, keeping the other query parameters."""
    def at(offset: int) -> str:
        return str(request.url.update_query(limit=window.limit, offset=offset))
    following = window.offset + window.limit
    next_url = at(following) if following < count else None
    previous_url = at(max(0, window.offset - window.limit)) if window.offset > 0 else None
    return next_url, previous_url


def envelope(request: web.Request, window: Window, count: int) -> dict[str, Any]:
    """The keyword arguments of a `Page` except `results`."""
    next_url, previous_url = links(request, window, count)
    return {"count": count, "next": next_url, "previous": previous_url}
