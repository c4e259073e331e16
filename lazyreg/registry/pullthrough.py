"""The /v2 side of pull-through distributions: which Target a manifest request is served from.

A name under a pull-through distribution asks `lazyreg.pullthrough` for a
Target that holds the reference (fetching it from the upstream when needed);
any other name is served as it is. With auth on and `anonymous_pull_through`
off, only a request whose token was issued to a user may make the
distribution fetch: an anonymous one gets stored content, or 401 with the
challenge that makes a logged-in client come back with its credentials.
"""

from __future__ import annotations

from aiohttp import web

from lazyreg.db.routing import Mirror, Target
from lazyreg.pullthrough import FetchRefused
from lazyreg.registry.access import authenticated, unauthorized
from lazyreg.registry.resolve import route_of, served
from lazyreg.state import state


def may_fetch(request: web.Request, mirror: Mirror) -> bool:
    return (mirror.anonymous_fetch or not state(request).auth.enabled
            or authenticated(request))


async def manifest_target(request: web.Request, name: str, reference: str) -> Target:
    """The Target to serve manifest `reference` (already checked: a tag or a digest) of `name`."""
    app = state(request)
    generation = app.lookups.generation  # a change published meanwhile: not kept
    route = await route_of(app, name)
    if route.mirror is None:
        return served(route, name)
    try:
        target = await app.pullthrough.resolve(route, reference, may_fetch(request, route.mirror))
    except FetchRefused as exc:
        raise unauthorized(request, str(exc), f"repository:{name}:pull") from None
    if target != route:
        # This process serves the new version at once; unless the distribution changed
        # (was deleted, say) while the fetch ran.
        app.lookups.put_target(name, target, generation)
    return target
