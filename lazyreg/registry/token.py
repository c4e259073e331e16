"""`GET /token`: the docker token protocol's token server.

Basic credentials (or none, for anonymous pulls of public distributions) and
`scope=repository:<name>:pull` parameters in; a short-lived signed JWT that
grants exactly the scopes the user may have, out (`lazyreg.auth.policy`). Bad
credentials are 401 with a Basic challenge, a malformed scope is 400: never
a token, never a 500.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from lazyreg.auth.policy import BadScope
from lazyreg.auth.service import AuthFailed
from lazyreg.auth.tokens import SERVICE
from lazyreg.errors import InvalidField, Unauthorized
from lazyreg.state import state

MAX_QUERY_LENGTH = 8192


async def issue(request: web.Request) -> web.Response:
    auth = state(request).auth
    if not auth.enabled:
        raise web.HTTPNotFound(reason="no token server: this server runs with --auth off")
    if len(request.query_string) > MAX_QUERY_LENGTH:
        raise InvalidField("scope", "query string too long")
    service = request.query.get("service")
    if service not in (None, "", SERVICE):
        raise InvalidField("service", f"this token server serves {SERVICE!r} only")
    try:
        answer = await auth.registry_token(request.headers.get("Authorization"),
                                           request.query.getall("scope", []))
    except AuthFailed as exc:
        raise Unauthorized(str(exc), 'Basic realm="lazyreg"') from None
    except BadScope as exc:
        raise InvalidField("scope", str(exc)) from None
    issued = datetime.fromtimestamp(answer.issued_at, UTC).isoformat().replace("+00:00", "Z")
    return web.json_response({"token": answer.token, "access_token": answer.token,
                              "expires_in": answer.expires_in, "issued_at": issued},
                             headers={"Cache-Control": "no-store"})
