"""The /api/v1 management API."""

from __future__ import annotations

from aiohttp import web

SLASHED = "/repositories/{name}"
SUBRESOURCE_FREE = r"(?!.*/(?:versions|sync|reclaim)(?:/[^/]*)?/?$).+"


def setup_routes(app: web.Application) -> None:
    from lazyreg.api.routes import ROUTES
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
        # Clients (and people with curl) often drop the trailing slash; answer both.
        if route.path.endswith("/"):
            app.router.add_route(route.method, route.path.rstrip("/"), route.handler)
    # Repository names may hold slashes (`hub/library/alpine`, made by pull-through):
    # written percent-encoded (%2F) they match the routes above; written as they are,
    # these. `…/versions/`, `…/versions/N/`, `…/sync/` and `…/reclaim/` always name the
    # sub-resource (a repository whose name ends so is reached percent-encoded).
    for route in ROUTES:
        if SLASHED not in route.path:
            continue
        rest = route.path.split(SLASHED, 1)[1]
        pattern = ".+" if rest != "/" else SUBRESOURCE_FREE
        path = route.path.replace(SLASHED, f"/repositories/{{name:{pattern}}}")
        app.router.add_route(route.method, path, route.handler)
        if path.endswith("/"):
            app.router.add_route(route.method, path.rstrip("/"), route.handler)
