"""`/token`: the docker token protocol's token server.

`GET /token`: Basic credentials (or none, for anonymous pulls of public
distributions) and `scope=repository:<name>:pull` parameters in; a
short-lived signed JWT that grants exactly the scopes the user may have, out
(`lazyreg.auth.policy`); with `offline_token=true` (`docker login`) and
credentials, also a `refresh_token`.

`POST /token`: the OAuth2 form that containerd, BuildKit and kubelet send (as
distribution's token server and Docker Hub take it): an
`application/x-www-form-urlencoded` body of at most `MAX_FORM_BYTES`, read
within `BODY_TIMEOUT`, with `grant_type=password` (`username`, `password`) or
`grant_type=refresh_token` (`refresh_token`), `scope` and `service`;
`access_type=offline` also returns a `refresh_token` (listed and revocable as
the user's tokens). The answer carries `access_token`, `expires_in`,
`issued_at` and `scope`.

Bad credentials are 401 with a Basic challenge, a malformed scope or form is
400: never a token, never a 500.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from lazyreg.auth.policy import MAX_SCOPES, BadScope
from lazyreg.auth.service import AuthFailed, Grant, TokenAnswer
from lazyreg.auth.tokens import SERVICE
from lazyreg.errors import InvalidField, TooLarge, TooSlow, Unauthorized
from lazyreg.state import state

MAX_QUERY_LENGTH = 8192
MAX_FORM_BYTES = 16 * 1024
MAX_FORM_FIELDS = 16 + MAX_SCOPES
FORM = "application/x-www-form-urlencoded"
# The API's body deadline (lazyreg.api.limits.BODY_TIMEOUT, a layer above this one).
BODY_TIMEOUT = 30.0
GRANT_TYPES = ("password", "refresh_token")


def _check_service(service: str | None) -> None:
    if service not in (None, "", SERVICE):
        raise InvalidField("service", f"this token server serves {SERVICE!r} only")


def _answer(answer: TokenAnswer) -> web.Response:
    issued = datetime.fromtimestamp(answer.issued_at, UTC).isoformat().replace("+00:00", "Z")
    body: dict[str, Any] = {"token": answer.token, "access_token": answer.token,
                            "expires_in": answer.expires_in, "issued_at": issued,
                            "scope": " ".join(answer.scopes)}
    if answer.refresh_token is not None:
        body["refresh_token"] = answer.refresh_token
    return web.json_response(body, headers={"Cache-Control": "no-store"})


async def issue(request: web.Request) -> web.Response:
    auth = state(request).auth
    if not auth.enabled:
        raise web.HTTPNotFound(reason="no token server: this server runs with --auth off")
    if len(request.query_string) > MAX_QUERY_LENGTH:
        raise InvalidField("scope", "query string too long")
    _check_service(request.query.get("service"))
    try:
        answer = await auth.registry_token(request.headers.get("Authorization"),
                                           request.query.getall("scope", []),
                                           request.query.get("offline_token") == "true")
    except AuthFailed as exc:
        raise Unauthorized(str(exc), 'Basic realm="lazyreg"') from None
    except BadScope as exc:
        raise InvalidField("scope", str(exc)) from None
    return _answer(answer)


async def _form(request: web.Request) -> dict[str, list[str]]:
    if request.content_type != FORM:
        raise InvalidField("Content-Type", f"the token form must be {FORM}")
    if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
        raise TooLarge(f"the token form is {request.content_length} bytes: at most"
                       f" {MAX_FORM_BYTES} are accepted")
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            raw = await request.content.read(MAX_FORM_BYTES + 1)
            while len(raw) <= MAX_FORM_BYTES and not request.content.at_eof():
                more = await request.content.read(MAX_FORM_BYTES + 1 - len(raw))
                if not more:
                    break
                raw += more
    except TimeoutError:
        raise TooSlow(f"the token form did not arrive within {BODY_TIMEOUT:g} s") from None
    if len(raw) > MAX_FORM_BYTES:
        raise TooLarge(f"the token form is over {MAX_FORM_BYTES} bytes")
    try:
        return parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                        max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise InvalidField("body", "not a URL-encoded UTF-8 form (or too many fields)"
                           ) from None


def _one(form: dict[str, list[str]], name: str) -> str:
    values = form.get(name, [])
    if len(values) > 1:
        raise InvalidField(name, "given more than once")
    return values[0] if values else ""


async def issue_form(request: web.Request) -> web.Response:
    auth = state(request).auth
    if not auth.enabled:
        raise web.HTTPNotFound(reason="no token server: this server runs with --auth off")
    form = await _form(request)
    _check_service(_one(form, "service"))
    grant_type = _one(form, "grant_type")
    if grant_type not in GRANT_TYPES:
        raise InvalidField("grant_type", f"must be one of {', '.join(GRANT_TYPES)}")
    grant = Grant(grant_type, _one(form, "username"), _one(form, "password"),
                  _one(form, "refresh_token"), _one(form, "access_type") == "offline")
    if grant_type == "password" and not grant.username:
        raise InvalidField("username", "required with grant_type=password")
    if grant_type == "refresh_token" and not grant.refresh_token:
        raise InvalidField("refresh_token", "required with grant_type=refresh_token")
    try:
        answer = await auth.oauth_token(grant, form.get("scope", []))
    except AuthFailed as exc:
        raise Unauthorized(str(exc), 'Basic realm="lazyreg"') from None
    except BadScope as exc:
        raise InvalidField("scope", str(exc)) from None
    return _answer(answer)
