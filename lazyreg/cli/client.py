"""The REST client of the CLI: JSON over the standard library's urllib.

Every failure to get an answer (an HTTP error, an unreachable server, an
answer too large or not JSON) raises `CliError` with a one-line message: the
server's `detail` when it sent one. Nothing here prints.
"""

from __future__ import annotations

import base64
import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

TIMEOUT = 60.0  # seconds, per connection attempt and per read
MAX_ANSWER = 64 * 1024 * 1024  # bytes of one answer; a page of 1000 artifacts is ~300 KiB
MAX_ERROR = 64 * 1024  # bytes of an error's body read for its `detail`


class CliError(Exception):
    """A failure to report on one line; the message says what went wrong.

    `code` is the exit status (1 unless a supervisor needs to tell failures apart).
    """

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def quote(name: str) -> str:
    """A name as one path segment (a task id or resource name never spans two)."""
    return urllib.parse.quote(name, safe="")


@dataclass
class Client:
    server: str
    # Sent as `Authorization: Bearer`: LAZYREG_TOKEN, or what `lazyreg login` stored.
    token: str | None = None
    # `Authorization: Basic`, for `lazyreg login` itself.
    basic: tuple[str, str] | None = None

    def url(self, path: str, query: dict[str, Any] | None = None) -> str:
        base = f"{self.server.rstrip('/')}/api/v1/{path.lstrip('/')}"
        given = {k: v for k, v in (query or {}).items() if v is not None}
        return f"{base}?{urllib.parse.urlencode(given)}" if given else base

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                query: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if self.basic is not None:
            pair = f"{self.basic[0]}:{self.basic[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        elif self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url(path, query), data=data, method=method,
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                raw = resp.read(MAX_ANSWER + 1)
                if len(raw) > MAX_ANSWER:
                    raise CliError(f"the answer to {method} {path} is larger than"
                                   f" {MAX_ANSWER} bytes")
                if resp.length:  # read(n) stops short, silently, when the server hangs up
                    raise http.client.IncompleteRead(raw, resp.length)
        except urllib.error.HTTPError as exc:
            raise CliError(_http_error(exc)) from None
        except urllib.error.URLError as exc:
            raise CliError(f"cannot reach {self.server}: {exc.reason}") from None
        except (TimeoutError, ConnectionError) as exc:
            raise CliError(f"cannot reach {self.server}: {exc}") from None
        except http.client.HTTPException as exc:  # e.g. the server died mid-answer
            raise CliError(f"broken answer from {self.server}: {type(exc).__name__}") from None
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise CliError(f"the answer to {method} {path} is not JSON") from None

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, query=query)

    def post(self, path: str, body: dict[str, Any] | None) -> Any:
        return self.request("POST", path, body)

    def patch(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("PATCH", path, body)

    def delete(self, path: str) -> None:
        self.request("DELETE", path)


def _http_error(exc: urllib.error.HTTPError) -> str:
    try:
        detail = json.loads(exc.read(MAX_ERROR)).get("detail")
    except (ValueError, AttributeError, OSError):
        detail = None
    message = str(detail) if detail else f"HTTP {exc.code} {exc.reason}"
    if exc.code == 401:
        message += " (log in with `lazyreg login`, or set LAZYREG_TOKEN)"
    return message
