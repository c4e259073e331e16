"""The HTML pages' login: a form, a `SameSite=Strict` session cookie and CSRF tokens.

With auth on, the status page needs a user of any role. A browser gets it by
a form (`GET /login`, `POST /login`), never by a Basic challenge: a browser
keeps Basic credentials for the origin and sends them with any request a page
elsewhere makes it send. The session is an API token (so it ends as the
user's other tokens do) in the cookie `lazyreg_session`: `HttpOnly`,
`SameSite=Strict` (a browser sends it only with requests made from this
server's own pages), `Secure` over HTTPS, `Path=/`; logging out revokes it. The management API does
not read that cookie: a session opens the HTML pages and nothing else.

Both forms carry a CSRF token, checked before anything else: the login form's
is bound to a random `lazyreg_login` cookie (so another site cannot log a
visitor in under its own account), the logout form's to the session. A form
POST from another origin (`Origin`, `Sec-Fetch-Site`) is refused as well.
Logins go through the same throttle as every password check.

Scripts may still send `Authorization` (Basic or Bearer) to `GET /`; the
page just never asks for it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from html import escape

from aiohttp import web
from sqlalchemy.orm import Session

from lazyreg.auth import token_store
from lazyreg.auth.browsers import cross_origin
from lazyreg.auth.credentials import BadCredentials, Basic, parse_authorization
from lazyreg.auth.policy import Identity
from lazyreg.auth.service import AuthFailed
from lazyreg.auth.throttle import Throttled
from lazyreg.bodies import read_body
from lazyreg.db import changes
from lazyreg.state import AppState, state

SESSION = "lazyreg_session"
LOGIN_NONCE = "lazyreg_login"
SESSION_TTL = 8 * 3600  # seconds a login lasts (at most the API token's maximum)
FORM_PATHS = frozenset({"/login", "/logout"})
MAX_FIELD = 1024
HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; style-src 'unsafe-inline';"
                                " form-action 'self'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
}


class FormRefused(Exception):
    """A login or logout form that must not be acted on: status and what to say."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _mac(app: AppState, purpose: str, value: str) -> str:
    digest = hmac.new(app.services.secrets.signing_key, f"{purpose}:{value}".encode(),
                      hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _cookie(response: web.StreamResponse, request: web.Request, name: str, value: str,
            max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True,
                        samesite="Strict", secure=request.secure)


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={**HEADERS, "Location": location})


def _page(title: str, body: str, status: int = 200,
          headers: dict[str, str] | None = None) -> web.Response:
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lazyreg {escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:15px/1.4 system-ui,sans-serif;margin:3em auto;max-width:22em}}
label,input,button{{display:block;width:100%;margin:.3em 0}}.error{{color:#a22}}</style>
</head><body><h1>lazyreg</h1>{body}</body></html>
"""
    return web.Response(text=html, content_type="text/html", status=status,
                        headers={**HEADERS, **(headers or {})})


def _login_form(request: web.Request, app: AppState, message: str = "", status: int = 200,
                headers: dict[str, str] | None = None) -> web.Response:
    nonce = secrets.token_urlsafe(24)
    error = f'<p class="error" role="alert">{escape(message)}</p>' if message else ""
    response = _page("login", f"""{error}<form method="post" action="/login">
<input type="hidden" name="csrf" value="{_mac(app, 'login', nonce)}">
<label>User <input name="username" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password"
required></label><button>Log in</button></form>""", status, headers)
    _cookie(response, request, LOGIN_NONCE, nonce, 3600)
    return response


def logout_form(request: web.Request) -> str:
    """The status page's logout button (empty without a session)."""
    session = request.cookies.get(SESSION)
    if not session:
        return ""
    csrf = _mac(state(request), "logout", session)
    return (f'<form method="post" action="/logout" style="display:inline">'
            f'<input type="hidden" name="csrf" value="{csrf}"><button>Log out</button></form>')


async def page_identity(request: web.Request) -> Identity | None:
    """Who may see an HTML page: the session's user, or an `Authorization` header's (for
    scripts); None when neither is valid. Raises `Throttled` as password checks do."""
    auth = state(request).auth
    header = request.headers.get("Authorization")
    session = request.cookies.get(SESSION)
    if header is None and session:
        header = f"Bearer {session}"
    if header is None:
        return None
    try:
        return await auth.api_identity(header)
    except AuthFailed:
        return None


async def _form(request: web.Request, purpose: str, bound_to: str | None
                ) -> dict[str, str]:
    """The posted form's fields, once it is known to come from our own page."""
    app = state(request)
    settings = app.services.settings
    why = cross_origin(request.headers.get("Origin"), request.headers.get("Sec-Fetch-Site"),
                       request.headers.get("Host"), settings.external_url)
    if why is not None:
        raise FormRefused(403, f"a form from another origin ({why}) is refused")
    if request.content_type != "application/x-www-form-urlencoded":
        raise FormRefused(415, "the form must be sent as application/x-www-form-urlencoded")
    await read_body(request, settings.body_timeout)
    fields = {k: v for k, v in (await request.post()).items()
              if isinstance(v, str) and len(v) <= MAX_FIELD}
    expected = _mac(app, purpose, bound_to) if bound_to else ""
    if not expected or not hmac.compare_digest(fields.get("csrf", ""), expected):
        raise FormRefused(403, "the form's CSRF token does not match: reload the page and"
                          " try again")
    return fields


async def login_page(request: web.Request) -> web.Response:
    app = state(request)
    if not app.auth.enabled:
        return see_other("/")
    return _login_form(request, app)


async def login(request: web.Request) -> web.Response:
    app = state(request)
    if not app.auth.enabled:
        return see_other("/")
    try:
        fields = await _form(request, "login", request.cookies.get(LOGIN_NONCE))
        username, password = fields.get("username", ""), fields.get("password", "")
        try:
            credentials = parse_authorization("Basic " + base64.b64encode(
                f"{username}:{password}".encode()).decode())
        except BadCredentials:
            raise FormRefused(401, "wrong username or password") from None
        assert isinstance(credentials, Basic)
        identity = await app.auth.check_basic(credentials)
    except FormRefused as exc:
        return _login_form(request, app, str(exc), exc.status)
    except AuthFailed:
        return _login_form(request, app, "wrong username or password", 401)
    except Throttled as exc:
        return _login_form(request, app, exc.message, 429, exc.headers)
    ttl = min(SESSION_TTL, app.services.settings.api_token_max_ttl)
    try:
        issued = await app.auth.mint(identity, ttl)
    except AuthFailed as exc:
        return _login_form(request, app, str(exc), 401)
    response = see_other("/")
    _cookie(response, request, SESSION, issued.token, ttl)
    response.del_cookie(LOGIN_NONCE, path="/")
    return response


async def logout(request: web.Request) -> web.Response:
    try:
        await _form(request, "logout", request.cookies.get(SESSION))
    except FormRefused as exc:
        return _page("logout", f'<p class="error">{escape(str(exc))}</p>', exc.status)
    who = await page_identity(request)
    token_id = who.token_id if who is not None else None
    if token_id is not None:  # the session's token ends here, not when it expires
        app = state(request)

        def revoke(session: Session) -> int | None:
            account = token_store.revoke(session, token_id, None)
            if account is not None:  # every node forgets it, not only this one
                changes.publish(session, [f"{changes.ACCOUNT_PREFIX}{account}"])
            return account
        account = await app.services.db.write(revoke)
        if account is not None:
            app.auth.invalidate_account(account)
    response = see_other("/login")
    response.del_cookie(SESSION, path="/")
    return response


def setup(app: web.Application) -> None:
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
