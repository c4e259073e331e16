"""`lazyreg serve`: run the application on one port, HTTP or HTTPS.

HTTP-level bounds, so that no client can hold a connection or a worker for
long without sending a request:
- `IDLE_TIMEOUT`: aiohttp's keep-alive timer, which runs from the moment a
  connection opens (or its last response ends) until a complete request head
  has arrived. It therefore bounds both an idle keep-alive connection and a
  request head sent slowly (slowloris); data trickling in does not reset it.
- Request line, header field and header count limits of aiohttp's parser,
  set here explicitly (a request over them gets a 400).
Request bodies are bounded in `lazyreg.api.limits` and read within the
`body_timeout` setting (`lazyreg.bodies`). A stop (SIGTERM, SIGINT) closes
the listening socket, waits up to `shutdown_timeout` seconds for requests in
progress, then cancels those left (aiohttp gives them as long again to end),
then closes the database: a stop takes at most about twice `shutdown_timeout`
plus the cleanup, whatever clients do.
"""

from __future__ import annotations

import logging
import ssl

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from lazyreg.app import create_app
from lazyreg.config import Settings, bind_refusal
from lazyreg.observe import logs
from lazyreg.redact import RedactingFilter

IDLE_TIMEOUT = 15.0
MAX_REQUEST_LINE = 8190  # bytes; also bounds a URL, so every name and query in it
MAX_HEADER_FIELD = 8190  # bytes of one header (a bearer token is a few KiB)
MAX_HEADERS = 128
# Seconds aiohttp goes on reading (and dropping) a body that a handler left unread, such
# as one cut off at the body deadline, before it closes the connection (its default is
# 10): the answer is not lost to a reset, and a dripping client is not kept much longer.
LINGER_TIME = 2.0


class StartRefused(Exception):
    """Settings a server must not start with; the message says why and what to do."""


class MalformedRequestsInOneLine(logging.Filter):
    """aiohttp logs a request its parser refused (and answered 400) as an ERROR with a
    traceback, as if the server had failed: it is the client's error, and one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and exc.code < 500:
            client = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg, record.args = "malformed request from %s refused (%d): %s", (
                client, exc.code, exc.message.splitlines()[0] if exc.message else "")
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info, record.exc_text = None, None
            return logging.getLogger(record.name).isEnabledFor(logging.INFO)
        return True


def serve(settings: Settings) -> None:
    refusal = bind_refusal(settings)
    if refusal:
        raise StartRefused(refusal)
    # No URL credentials in any log line.
    logs.configure(settings.log_format, settings.log_level, filters=(RedactingFilter(),))
    logging.getLogger("aiohttp.server").addFilter(MalformedRequestsInOneLine())
    ssl_context = None
    if settings.tls_cert and settings.tls_key:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(settings.tls_cert, settings.tls_key)
    scheme = "https" if ssl_context else "http"
    print(f"lazyreg serving {scheme}://{settings.host}:{settings.port}"
          f" (data: {settings.data_dir.resolve()}, database:"
          f" {settings.resolved_database_url.split('@')[-1]}, auth: {settings.auth})",
          flush=True)
    web.run_app(create_app(settings), host=settings.host, port=settings.port,
                ssl_context=ssl_context, print=None, access_log=None,
                handler_cancellation=False, keepalive_timeout=IDLE_TIMEOUT,
                shutdown_timeout=settings.shutdown_timeout, lingering_time=LINGER_TIME,
                max_line_size=MAX_REQUEST_LINE, max_field_size=MAX_HEADER_FIELD,
                max_headers=MAX_HEADERS)
