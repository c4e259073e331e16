"""`lazyreg serve`: run the application on one port, HTTP or HTTPS."""

from __future__ import annotations

import logging
import ssl

from aiohttp import web

from lazyreg.app import create_app
from lazyreg.config import Settings, bind_refusal
from lazyreg.redact import RedactingFilter


class StartRefused(Exception):
    """Settings a server must not start with; the message says why and what to do."""


def serve(settings: Settings) -> None:
    refusal = bind_refusal(settings)
    if refusal:
        raise StartRefused(refusal)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())  # no URL credentials in any log line
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
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
                handler_cancellation=False)
