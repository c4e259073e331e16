"""What can go wrong talking to an upstream registry.

    UpstreamError
    ├── Unavailable        connection refused/reset, timeout, 5xx (after retries)
    │   ├── TooManyRequests    429 (after retries)
    │   └── Stalled            a body slower than the stall rule, or not read in time
    ├── NotFound           404: the repository, manifest or blob is not there
    ├── AuthError          401/403 that credentials did not fix
    ├── InvalidResponse    the upstream answered something that is not a registry answer
    │   └── RedirectRefused    a redirect or token realm we must not follow (scheme, address)
    │   └── TooLarge           a body over its byte cap (manifest, config, tag page, token)
    └── DigestMismatch     bytes that do not hash to the digest they were asked by

Retry code catches `Unavailable`; everything else is final.
"""

from __future__ import annotations


class UpstreamError(Exception):
    pass


class Unavailable(UpstreamError):
    pass


class TooManyRequests(Unavailable):
    pass


class Stalled(Unavailable):
    pass


class NotFound(UpstreamError):
    pass


class AuthError(UpstreamError):
    pass


class InvalidResponse(UpstreamError):
    pass


class RedirectRefused(InvalidResponse):
    pass


class TooLarge(InvalidResponse):
    pass


class DigestMismatch(UpstreamError):
    pass
