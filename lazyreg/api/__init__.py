"""The /api/v1 management API."""

from __future__ import annotations

from aiohttp import web


def setup_routes(app: web.Application) -> None:
    from lazyreg.api.routes import ROUTES
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
        # Clients (and people with curl) often drop the trailing slash; answer both.
        if route.path.endswith("/"):
            app.router.add_route(route.method, route.path.rstrip("/"), route.handler)
