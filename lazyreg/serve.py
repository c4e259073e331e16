"""`lazyreg serve`: run the application on one port, HTTP or HTTPS."""

from __future__ import annotations

import ipaddress
import ssl

from aiohttp import web

from lazyreg.app import create_app
from lazyreg.config import Settings
from lazyreg.observe import logs


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(settings: Settings) -> None:
    logs.configure(settings.log_format, settings.log_level)
    ssl_context = None
    if settings.tls_cert and settings.tls_key:
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(settings.tls_cert, settings.tls_key)
    scheme = "https" if ssl_context else "http"
    warning = "" if _is_loopback(settings.host) else (
        "  WARNING: the management API has no authentication and is reachable from the network")
    print(f"lazyreg serving {scheme}://{settings.host}:{settings.port}"
          f" (data: {settings.data_dir.resolve()}, database:"
          f" {settings.resolved_database_url.split('@')[-1]}){warning}", flush=True)
    web.run_app(create_app(settings), host=settings.host, port=settings.port,
                ssl_context=ssl_context, print=None, access_log=None,
                handler_cancellation=False)
