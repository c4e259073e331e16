"""How the servers of a cluster prove to each other that they share `cluster_secret`.

A peer request carries `X-Lazyreg-Peer: <unix time>:<hex>`, the hex being
HMAC-SHA256 (stdlib `hmac`) of `"<time>\\n<METHOD>\\n<path>"` under the secret.
The secret itself never goes over the wire, so a request overheard on the
cluster's network tells nothing that signs another path; a signature is
accepted for SKEW seconds either side of the receiver's clock (the internal
endpoint only reads, so a replay within that time reveals no more than the
request it copies). Signatures are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Lazyreg-Peer"
SKEW = 60.0  # seconds a signature stays valid either side of the receiver's clock
MAX_HEADER = 128  # characters: a longer header is refused unread


def _mac(secret: str, stamp: str, method: str, path: str) -> str:
    message = f"{stamp}\n{method.upper()}\n{path}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, method: str, path: str, now: float | None = None) -> str:
    """The header value for a request of `method` on `path` (without query)."""
    stamp = str(int(time.time() if now is None else now))
    return f"{stamp}:{_mac(secret, stamp, method, path)}"


def verify(secret: str, header: str | None, method: str, path: str,
           now: float | None = None) -> bool:
    """Whether `header` signs `method` `path` with `secret`, within SKEW seconds."""
    if not header or len(header) > MAX_HEADER:
        return False
    stamp, _, mac = header.partition(":")
    if not stamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > SKEW:
        return False
    return hmac.compare_digest(mac.encode(), _mac(secret, stamp, method, path).encode())
