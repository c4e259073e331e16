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
    def __init__(self, *args: object, status: int | None = None) -> None:
        super().__init__(*args)
        self.status = status  # the HTTP status the upstream answered, when it did


def upstream_status(exc: BaseException | None) -> int | None:
    """The upstream's HTTP status behind `exc` (or what caused it), if one is known."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, UpstreamError) and exc.status is not None:
            return exc.status
        exc = exc.__cause__ or exc.__context__
    return None


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
