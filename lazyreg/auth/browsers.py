"""What a browser may make this server do: plain decisions on request headers, no I/O.

A page on another origin can send a visitor's browser to this server: a form
POST or a `fetch()` in no-cors mode needs no CORS preflight when its body is
`text/plain`, form-encoded or multipart, and it carries whatever credentials
the browser holds for this origin. And with auth off, a DNS-rebinding page
reaches a loopback server under its own host name. So:

- a write whose request has a body must name `application/json`, which no
  form can send and no page can send cross-origin without a preflight that
  this server never grants (`is_json`); a write without a body reads nothing,
  and a browser's comes with the headers below;
- a write from another origin is refused: an `Origin` that is not this
  server's own (`null` included), or `Sec-Fetch-Site: cross-site|same-site`
  (`cross_origin`);
- with auth off, the `Host` must be a loopback name or `external_url`'s host
  (`allowed_host`): a rebinding page's requests carry the attacker's name.

Clients that are not browsers (the CLI, curl, docker) send no `Origin` and no
`Sec-Fetch-Site`, and send JSON: none of this is in their way.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from urllib.parse import urlsplit

JSON = "application/json"
# Sec-Fetch-Site values that name another origin than this one.
OTHER_SITES = frozenset({"cross-site", "same-site"})
MAX_HOST_LENGTH = 300


def is_json(content_type: str | None) -> bool:
    """Whether a `Content-Type` header names JSON (parameters such as charset allowed)."""
    if content_type is None:
        return False
    return content_type.split(";", 1)[0].strip().lower() == JSON


def _split_host(host: str) -> tuple[str, str]:
    """`host[:port]` (or `[v6]:port`) as (lowercased name without a final dot, port)."""
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        return name, rest.removeprefix(":")
    name, _, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
    return name.rstrip("."), port


def is_loopback_name(name: str) -> bool:
    """`localhost`, a name under `.localhost` (RFC 6761: always loopback), or a loopback
    address (127.0.0.0/8, ::1, ::ffff:127.x.y.z)."""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _external_host(external_url: str | None) -> str | None:
    if not external_url:
        return None
    parts = urlsplit(external_url)
    return parts.hostname.rstrip(".") if parts.hostname else None


@lru_cache(maxsize=256)
def allowed_host(host: str | None, external_url: str | None) -> bool:
    """With auth off: whether a request's `Host` may be answered. A request without one
    (HTTP/1.0) is not a browser's."""
    if host is None:
        return True
    if len(host) > MAX_HOST_LENGTH:
        return False
    name, _ = _split_host(host)
    return is_loopback_name(name) or name == _external_host(external_url)


def _origin_key(url: str) -> str | None:
    """`host[:port]` of an origin or URL, with the scheme's default port left out."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    try:
        port = parts.port
    except ValueError:
        return None
    default = 443 if parts.scheme == "https" else 80
    name = parts.hostname.rstrip(".")
    name = f"[{name}]" if ":" in name else name
    return name if port in (None, default) else f"{name}:{port}"


def _host_key(host: str) -> str:
    name, port = _split_host(host)
    name = f"[{name}]" if ":" in name else name
    return name if port in ("", "80", "443") else f"{name}:{port}"


def cross_origin(origin: str | None, fetch_site: str | None, host: str | None,
                 external_url: str | None) -> str | None:
    """Why a write comes from another origin than this server's, or None.

    This server's origin is the request's own `Host` (a TLS proxy in front may
    change the scheme, so the scheme is not compared) or `external_url`'s.
    """
    if fetch_site is not None and fetch_site.strip().lower() in OTHER_SITES:
        return f"Sec-Fetch-Site: {fetch_site.strip()[:40]}"
    if origin is None:
        return None
    key = _origin_key(origin.strip())
    if key is not None and ((host is not None and key == _host_key(host))
                            or (external_url and key == _origin_key(external_url))):
        return None
    return f"Origin: {origin.strip()[:100]}"
