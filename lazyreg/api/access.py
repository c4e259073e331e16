"""Who may call the management API, and an audit line for every write.

With auth on, every /api/v1 request needs `Authorization: Basic …` or
`Bearer <token from POST /api/v1/tokens/>`: none or a bad one is 401 with a
`WWW-Authenticate` challenge; a role that does not allow the request is 403
(`lazyreg.auth.policy` decides). With auth off (loopback only) everyone is
an admin. A write (any method but GET, HEAD and OPTIONS) from another
origin is 403 and one with a body that is not JSON 415, before any credential is
looked at (`lazyreg.auth.browsers`: a page elsewhere cannot write through
a visitor's browser). A body is read, within `body_timeout`, only once the
caller may make the request. Every request that changes something (any method but GET, HEAD and
OPTIONS) is logged on `lazyreg.audit` with the user, the request and its
status, whether it succeeded or not.
"""

from __future__ import annotations

import logging

from aiohttp import web
from pydantic import ValidationError

from lazyreg.api.routing import PREFIX, Handler
from lazyreg.auth.browsers import cross_origin, is_json
from lazyreg.auth.policy import READ_METHODS, Identity, allowed, api_need
from lazyreg.auth.service import AuthFailed
from lazyreg.bodies import read_body
from lazyreg.errors import (
    ApiError,
    BackendUnavailable,
    Forbidden,
    Unauthorized,
    UnsupportedMediaType,
)
from lazyreg.state import state

audit = logging.getLogger("lazyreg.audit")

IDENTITY = web.RequestKey("identity", Identity)
CHALLENGE = 'Bearer realm="lazyreg", Basic realm="lazyreg"'


def identity(request: web.Request) -> Identity | None:
    """The caller; None when auth is off."""
    return request.get(IDENTITY)


def _status_of(exc: BaseException) -> int:
    if isinstance(exc, (ApiError, BackendUnavailable)):
        return exc.status
    if isinstance(exc, ValidationError):
        return 400
    if isinstance(exc, web.HTTPException):
        return exc.status
    return 500


async def _check(request: web.Request) -> Identity | None:
    auth = state(request).auth
    if not auth.enabled:
        return None
    try:
        who = await auth.api_identity(request.headers.get("Authorization"))
    except AuthFailed as exc:
        raise Unauthorized(f"{exc}: send Basic credentials or a token from"
                           f" POST {PREFIX}/tokens/", CHALLENGE) from None
    if not allowed(who, api_need(request.method, request.path[len(PREFIX):], who.username)):
        raise Forbidden(f"user {who.username!r} has the {who.role} role:"
                        f" {request.method} {request.path} needs an admin")
    return who


def _browser_check(request: web.Request) -> None:
    """A write must come from this server's origin and send JSON (`lazyreg.auth.browsers`)."""
    settings = state(request).services.settings
    why = cross_origin(request.headers.get("Origin"), request.headers.get("Sec-Fetch-Site"),
                       request.headers.get("Host"), settings.external_url)
    if why is not None:
        raise Forbidden(f"a write from another origin ({why}) is refused: the management API"
                        " takes writes from its own origin and from clients that are not"
                        " browsers")
    content_type = request.headers.get("Content-Type")
    # Without a body nothing is read, whatever the type says (aiohttp's client names
    # application/octet-stream for an empty POST).
    if request.body_exists and not is_json(content_type):
        raise UnsupportedMediaType(
            f"a write must send Content-Type: application/json, not"
            f" {(content_type or 'none')[:100]!r}", "Content-Type")


@web.middleware
async def api_access(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not (request.path == PREFIX or request.path.startswith(PREFIX + "/")):
        return await handler(request)
    writes = request.method not in READ_METHODS
    who: Identity | None = None
    status = 500
    try:
        if writes:
            _browser_check(request)
        who = await _check(request)
        if who is not None:
            request[IDENTITY] = who
        if request.body_exists:
            # Every body within the one deadline, whatever the handler does with it.
            await read_body(request, state(request).services.settings.body_timeout)
        response = await handler(request)
        status = response.status
        return response
    except BaseException as exc:
        status = _status_of(exc)
        raise
    finally:
        if writes:
            user = who.username if who else ("-" if state(request).auth.enabled else "(auth off)")
            audit.info("audit: user=%s from=%s %s %r -> %d", user, request.remote,
                       request.method, request.path, status)
