"""`GET /v2/`, `GET /v2/_catalog` and `GET /v2/<name>/tags/list`, paged with `n`, `last`, `Link`.

Paging happens in the database: a page costs one query that reads at most
`n + 1` names past `last`, however many the repository holds. `n` is capped
at MAX_PAGE, and a request without `n` gets a page of MAX_PAGE with a `Link`
to the next one. Names are ordered bytewise (PostgreSQL's collation would
otherwise put them in another order than the one `last` assumes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from lazyreg.db.models import Tag
from lazyreg.db.routing import catalog_names
from lazyreg.errors import RegistryError
from lazyreg.registry.access import catalog_filter
from lazyreg.registry.params import text_param
from lazyreg.registry.resolve import members, target_of
from lazyreg.state import state

API_HEADERS = {"Docker-Distribution-API-Version": "registry/2.0"}
MAX_PAGE = 10000
_DIGITS = re.compile(r"[0-9]+")


async def v2_root(request: web.Request) -> web.Response:
    return web.json_response({}, headers=API_HEADERS)


@dataclass(frozen=True)
class PageRequest:
    n: int
    last: str | None

    @classmethod
    def of(cls, request: web.Request) -> PageRequest:
        n_raw = request.query.get("n")
        if n_raw is None:
            n = MAX_PAGE
        elif not _DIGITS.fullmatch(n_raw):
            raise RegistryError("PAGINATION_NUMBER_INVALID",
                                f"invalid n={n_raw[:40]!r}: expected a whole number >= 0")
        else:
            # A number of any length is fine: it only asks for as many as we give.
            digits = n_raw.lstrip("0")
            n = MAX_PAGE if len(digits) > 9 else min(int(digits or "0"), MAX_PAGE)
        return cls(n, text_param("last", request.query.get("last")))

    def select(self, session: Session, column: ColumnElement[str] | InstrumentedAttribute[str],
               *where: ColumnElement[bool]) -> Select[str]:
        """The distinct values of `column` on this page, and one more if there is any."""
        ordered = column.collate("C") if session.get_bind().dialect.name == "postgresql" \
            else column
        stmt = select(ordered).where(*where).distinct()
        if self.last is not None:
            stmt = stmt.where(ordered > self.last)
        return stmt.order_by(ordered).limit(self.n + 1)

    def cut(self, request: web.Request, names: list[str]) -> tuple[list[str], dict[str, str]]:
        """The page from the `n + 1` names read, and a Link header when more follow."""
        page = names[:self.n]
        headers = dict(API_HEADERS)
        if len(names) > self.n and page:
            query = urlencode({"n": self.n, "last": page[-1]})
            headers["Link"] = f'<{request.path}?{query}>; rel="next"'
        return page, headers


async def catalog(request: web.Request) -> web.Response:
    paging = PageRequest.of(request)

    def names(session: Session) -> list[str]:
        # Private distributions are listed only to their readers (and admins).
        column = catalog_names(*catalog_filter(request, session))
        return list(session.scalars(paging.select(session, column)))
    repos, headers = paging.cut(request, await state(request).services.db.read(names))
    return web.json_response({"repositories": repos}, headers=headers)


async def tags_list(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    paging = PageRequest.of(request)
    app = state(request)
    target = await target_of(app, name)

    def tags(session: Session) -> list[str]:
        held = members(target)
        return list(session.scalars(paging.select(session, Tag.name, Tag.id.in_(held))))
    page, headers = paging.cut(request, await app.services.db.read(tags))
    return web.json_response({"name": name, "tags": page}, headers=headers)
