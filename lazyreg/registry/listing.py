"""`GET /v2/`, `GET /v2/_catalog` and `GET /v2/<name>/tags/list`, paged with `n`, `last`, `Link`."""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import Session

from lazyreg.db import content as q
from lazyreg.db.models import Distribution
from lazyreg.errors import RegistryError
from lazyreg.registry.access import catalog_names
from lazyreg.registry.resolve import target_of
from lazyreg.state import state

API_HEADERS = {"Docker-Distribution-API-Version": "registry/2.0"}
MAX_PAGE = 10000


async def v2_root(request: web.Request) -> web.Response:
    return web.json_response({}, headers=API_HEADERS)


def _page(request: web.Request, items: list[str]) -> tuple[list[str], dict[str, str]]:
    """Apply `last` and `n`; return the page and a Link header when more follow."""
    last = request.query.get("last")
    n_raw = request.query.get("n")
    if last:
        items = [i for i in items if i > last]
    headers = dict(API_HEADERS)
    if n_raw is None:
        return items, headers
    try:
        n = int(n_raw)
        if n < 0:
            raise ValueError
    except ValueError:
        raise RegistryError("UNSUPPORTED", f"invalid n={n_raw!r}", status=400) from None
    n = min(n, MAX_PAGE)
    page = items[:n]
    if len(items) > n and page:
        query = urlencode({"n": n, "last": page[-1]})
        headers["Link"] = f'<{request.path}?{query}>; rel="next"'
    return page, headers


async def catalog(request: web.Request) -> web.Response:
    def names(session: Session) -> list[str]:
        visible = catalog_names(request, session)  # private ones only to their readers
        return visible if visible is not None else sorted(
            session.scalars(select(Distribution.base_path)))
    repos, headers = _page(request, await state(request).services.db.read(names))
    return web.json_response({"repositories": repos}, headers=headers)


async def tags_list(request: web.Request) -> web.Response:
    name = request.match_info["name"]

    app = state(request)
    target = await target_of(app, name)

    def tags(session: Session) -> list[str]:
        rows = session.execute(q.tags_in_version(session, target.repository_id,
                                                 target.version)).all()
        return sorted({row[0] for row in rows})
    page, headers = _page(request, await app.services.db.read(tags))
    return web.json_response({"name": name, "tags": page}, headers=headers)
