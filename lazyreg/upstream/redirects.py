"""Where an upstream may send us: the rules for redirects and token realms.

An upstream is not trusted to choose our next destination. A place it names
(a `Location`, a token `realm`) must be http or https: `file:`, `ftp:` and any
other scheme are refused. It must not be a link-local or cloud metadata
address (169.254.0.0/16, fe80::/10, fd00:ec2::254, and their IPv4-mapped
forms), as written or as its name resolves, unless the remote sets
`allow_private_redirects`. The connection then goes to the very address that
was checked (the request is pinned to it, with the original Host and TLS
server name), so a DNS answer that changes between check and connect cannot
get round the rule. The remote's own URL is not checked: mirrors of internal
registries are normal.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

from yarl import URL

from lazyreg.upstream.errors import RedirectRefused

MAX_REDIRECTS = 10
RESOLVE_TIMEOUT = 10.0
ALLOWED_SCHEMES = ("http", "https")
METADATA_NETWORKS = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::254/128"),
)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_forbidden_address(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_link_local or any(address in net for net in METADATA_NETWORKS)


@dataclass(frozen=True)
class Destination:
    """Where to send a request: the URL to connect to, and what to present as the host."""

    url: URL
    host_header: str | None = None
    server_hostname: str | None = None


def check_scheme(url: URL, what: str) -> None:
    if url.scheme not in ALLOWED_SCHEMES or not url.host:
        raise RedirectRefused(f"refused {what} to {url.scheme or 'a relative'}: URL"
                              " (only http and https are followed)")


async def _addresses(host: str, port: int) -> list[Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError) as exc:
        raise RedirectRefused(f"cannot resolve {host}: {exc}") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


async def destination(url: URL, *, allow_private: bool, pin: bool,
                      what: str = "a redirect") -> Destination:
    """Check `url` as a place an upstream sent us to; the destination to connect to.

    With `pin` (no proxy in between), the request goes to the address checked.
    """
    check_scheme(url, what)
    if allow_private:
        return Destination(url)
    host, port = url.host or "", url.port or (443 if url.scheme == "https" else 80)
    addresses = await _addresses(host, port)
    bad = [a for a in addresses if is_forbidden_address(a)]
    if bad or not addresses:
        raise RedirectRefused(f"refused {what} to {url.host}: {bad[0] if bad else 'no address'}"
                              " is a link-local or metadata address (set"
                              " allow_private_redirects on the remote to allow it)")
    if not pin or str(addresses[0]) == host:
        return Destination(url)
    pinned = url.with_host(str(addresses[0]))
    host_header = host if url.explicit_port is None else f"{host}:{url.explicit_port}"
    return Destination(pinned, host_header, host if url.scheme == "https" else None)


def same_origin(a: URL, b: URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)
