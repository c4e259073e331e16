"""Where an upstream may send us: the rules for redirects and token realms.

An upstream is not trusted to choose our next destination. A place it names
(a `Location`, a token `realm`) must be http or https: `file:`, `ftp:` and any
other scheme are refused. Its address, as written or as its name resolves
(`localhost`, `2130706433`, `0x7f.1` and the other legacy IPv4 spellings
included), falls in one of these classes or in none (public):

- loopback: 127.0.0.0/8, ::1;
- unspecified: 0.0.0.0/8, :: (a connection to 0.0.0.0 reaches this host);
- private: 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, fc00::/7;
- link-local: 169.254.0.0/16, fe80::/10, fd00:ec2::254 (cloud metadata).

An IPv6 address that carries an IPv4 one (::ffff:0:0/96 mapped, ::/96
compatible, 64:ff9b::/96 NAT64) is classed by the IPv4 address it carries.

A place in a class is refused, before any connection, unless the remote's own
URL has an address in that same class (a mirror of a registry on the private
network may be sent elsewhere on it; one on 127.0.0.1 elsewhere on loopback),
or the remote sets `allow_private_redirects`. Link-local is refused whatever
the remote's own class: only `allow_private_redirects` opens it. So a public
upstream can send us nowhere but public addresses, and a loopback one not to
0.0.0.0 nor the private network.

The connection then goes to the very address that was checked (the request is
pinned to it, with the original Host and TLS server name), so a DNS answer
that changes between check and connect cannot get round the rule. Through a
proxy the proxy connects, to the name as checked. The remote's own URL is not
checked: mirrors of internal registries are normal.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Literal

from yarl import URL

from lazyreg.upstream.errors import RedirectRefused

MAX_REDIRECTS = 10
RESOLVE_TIMEOUT = 10.0
MAX_ADDRESSES = 32  # of a name's resolution, checked
ALLOWED_SCHEMES = ("http", "https")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
AddressClass = Literal["loopback", "unspecified", "private", "link-local"]

METADATA_NETWORKS = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::254/128"),
)
PRIVATE_NETWORKS = (
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("172.16.0.0/12"),
    ipaddress.ip_network("192.168.0.0/16"),
    ipaddress.ip_network("100.64.0.0/10"),
    ipaddress.ip_network("fc00::/7"),
)
UNSPECIFIED_V4 = ipaddress.ip_network("0.0.0.0/8")
# IPv6 prefixes whose last 32 bits are an IPv4 address.
EMBEDDING_NETWORKS = (
    ipaddress.ip_network("::/96"),
    ipaddress.ip_network("64:ff9b::/96"),
)


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if any(address in net for net in EMBEDDING_NETWORKS):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_class(address: Address) -> AddressClass | None:
    """The class of `address` for the redirect rule; None for a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.is_loopback:
            return "loopback"
        if address.is_unspecified:
            return "unspecified"
        carried = embedded_ipv4(address)
        if carried is not None:
            address = carried
    if address.is_link_local or any(address in net for net in METADATA_NETWORKS):
        return "link-local"
    if address.is_loopback:
        return "loopback"
    if address.is_unspecified or (isinstance(address, ipaddress.IPv4Address)
                                  and address in UNSPECIFIED_V4):
        return "unspecified"
    if any(address.version == net.version and address in net for net in PRIVATE_NETWORKS):
        return "private"
    return None


def is_forbidden_address(address: Address) -> bool:
    """Refused for every remote without `allow_private_redirects`: link-local, metadata."""
    return address_class(address) == "link-local"


def _literal(host: str) -> Address | None:
    """`host` as an address, if it is one, in any spelling a resolver would accept
    (`2130706433`, `0x7f.1`, `127.1`) but without asking a resolver."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None

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
    literal = _literal(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError) as exc:
        raise RedirectRefused(f"cannot resolve {host}: {exc}") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0])
            for info in infos[:MAX_ADDRESSES]]


async def own_classes(url: URL) -> frozenset[AddressClass]:
    """The classes of the remote's own addresses: where its redirects may also go."""
    host, port = url.host or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        addresses = await _addresses(host, port)
    except RedirectRefused:
        return frozenset()  # unresolvable here (through a proxy, say): a public remote
    return frozenset(c for c in map(address_class, addresses) if c and c != "link-local")


async def destination(url: URL, *, allow_private: bool, pin: bool,
                      own: frozenset[AddressClass] = frozenset(),
                      what: str = "a redirect") -> Destination:
    """Check `url` as a place an upstream sent us to; the destination to connect to.

    `own` are the classes of the remote's own address (`own_classes`). With
    `pin` (no proxy in between), the request goes to the address checked.
    """
    check_scheme(url, what)
    if allow_private:
        return Destination(url)
    host, port = url.host or "", url.port or (443 if url.scheme == "https" else 80)
    addresses = await _addresses(host, port)
    if not addresses:
        raise RedirectRefused(f"refused {what} to {host}: it has no address")
    for address in addresses:
        kind = address_class(address)
        if kind is not None and (kind == "link-local" or kind not in own):
            mine = ", ".join(sorted(own)) or "public"
            raise RedirectRefused(
                f"refused {what} to {host}: {address} is a {kind} address and the"
                f" remote's own is {mine} (set allow_private_redirects on the remote to"
                " allow it)")
    literal = _literal(host)
    if not pin or (literal is not None and str(literal) == host):
        return Destination(url)
    pinned = url.with_host(str(addresses[0]))
    host_header = host if url.explicit_port is None else f"{host}:{url.explicit_port}"
    return Destination(pinned, host_header, host if url.scheme == "https" else None)


def same_origin(a: URL, b: URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)
