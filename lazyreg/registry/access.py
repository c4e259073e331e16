"""Who may pull what on /v2, decided in one place.

With auth on, a private distribution is served only to a request whose Bearer
token (from `GET /token`) grants `repository:<base_path>:pull`; otherwise the
answer is 401 `UNAUTHORIZED` with the challenge
`Bearer realm="<server>/token",service="lazyreg",scope="repository:<base_path>:pull"`,
and no content; an unknown name gets the very same answer, so that a client
without pull rights cannot tell private names from missing ones. Public
distributions are served to anyone. A name under a
pull-through distribution (longest base-path prefix) follows that
distribution's rule; whether an anonymous client may make it fetch new
content is `lazyreg.registry.pullthrough`'s to decide. `GET /v2/` asks
for a token (as the distribution registry does), which is what makes docker,
podman and skopeo go through the token server at all; `_catalog` lists only
what the token's user may pull. A bad token is 401 wherever it is sent.
With auth off (loopback only) nothing here applies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

from lazyreg.auth.policy import Identity
from lazyreg.auth.service import AuthFailed
from lazyreg.auth.tokens import SERVICE, RegistryClaims
from lazyreg.auth.users import find_identity, pullable
from lazyreg.errors import RegistryError
from lazyreg.registry.resolve import route_of
from lazyreg.state import state

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CLAIMS = web.RequestKey("registry_claims", RegistryClaims)
ROOTS = ("/v2", "/v2/")


def realm(request: web.Request) -> str:
    base = state(request).services.settings.external_url or str(request.url.origin())
    return base.rstrip("/") + "/token"


def unauthorized(request: web.Request, message: str, scope: str | None = None
                 ) -> RegistryError:
    challenge = f'Bearer realm="{realm(request)}",service="{SERVICE}"'
    if scope:
        challenge += f',scope="{scope}"'
    error = RegistryError("UNAUTHORIZED", message)
    error.headers = {"WWW-Authenticate": challenge}
    return error


@web.middleware
async def registry_access(request: web.Request, handler: Handler) -> web.StreamResponse:
    app = state(request)
    if not (request.path in ROOTS or request.path.startswith("/v2/")) or not app.auth.enabled:
        return await handler(request)
    name = request.match_info.get("name")
    scope = f"repository:{name}:pull" if name else None
    try:
        claims = await app.auth.registry_claims(request.headers.get("Authorization"))
    except AuthFailed as exc:
        raise unauthorized(request, f"{exc}: get a token from {realm(request)}", scope
                           ) from None
    if claims is not None:
        request[CLAIMS] = claims
    if request.path in ROOTS and claims is None:
        raise unauthorized(request, "authentication required: get a token (anonymous or"
                           f" with Basic credentials) from {realm(request)}")
    if name is not None and (claims is None or not claims.allows(name)):
        # A private name and an unknown one get the same 401, as from distribution in
        # token mode: a client without pull rights cannot tell which names exist. A name
        # under a pull-through distribution follows its rule whether or not it was pulled
        # before. (A token granting an unknown name was issued before a delete: 404.)
        try:
            private = (await route_of(app, name)).private
        except RegistryError as exc:
            if exc.code != "NAME_UNKNOWN":
                raise
            private = True
        if private:
            raise unauthorized(request, f"pulling {name!r} needs a token that grants its"
                               f" scope: log in as one of its readers at {realm(request)}",
                               scope)
    return await handler(request)


def authenticated(request: web.Request) -> bool:
    """Whether the request carries a token issued to a user (not an anonymous one)."""
    claims = request.get(CLAIMS)
    return claims is not None and bool(claims.subject)


def catalog_filter(request: web.Request, session: Session) -> list[ColumnElement[bool]]:
    """Conditions on Distribution that `_catalog` applies for this request (none: all)."""
    if not state(request).auth.enabled:
        return []
    claims = request.get(CLAIMS)
    identity: Identity | None = None
    if claims is not None and claims.account is not None:
        identity = find_identity(session, claims.account)
    condition = pullable(identity)
    return [] if condition is None else [condition]
