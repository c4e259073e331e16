"""The errors lazyreg reports to its users, and the one table of OCI error codes.

    LazyregError
    ├── RegistryError      an OCI distribution error (code + HTTP status), for /v2
    ├── ApiError           a management API error, for /api/v1
    │   ├── NotFound       404, names the resource
    │   ├── Conflict       409
    │   ├── InvalidField   400, names the field
    │   ├── Unauthorized   401, no or bad credentials (with a WWW-Authenticate challenge)
    │   ├── Forbidden      403, the user's role does not allow it
    │   ├── TooLarge       413, a request body over the limit
    │   ├── TooSlow        408, a request body that did not arrive in time
    │   ├── UnsupportedMediaType  415, a write's body is not JSON
    │   └── StorageFull    507, the disk (or the database) is full
    ├── BackendUnavailable 503 + Retry-After: a part the server depends on is unreachable
    │   └── DatabaseUnavailable
    └── SecretUnavailable  a stored secret cannot be decrypted with the secret key
    StorageUnavailable     the blob storage (an object store) does not answer: 503 with
                           Retry-After (an OSError, so that a download relays on it)

Any of them may carry response `headers` (a challenge, for instance).

Handlers raise these; `lazyreg.web` renders them in one place.
Upstream failures have their own tree in `lazyreg.upstream.errors`.
"""

from __future__ import annotations

# code -> (HTTP status, default message), as registered by the distribution spec.
OCI_ERROR_CODES: dict[str, tuple[int, str]] = {
    "BLOB_UNKNOWN": (404, "blob unknown to registry"),
    "BLOB_UPLOAD_UNKNOWN": (404, "blob upload unknown to registry"),
    "DIGEST_INVALID": (400, "provided digest did not match uploaded content"),
    "MANIFEST_UNKNOWN": (404, "manifest unknown"),
    "MANIFEST_INVALID": (400, "manifest invalid"),
    "NAME_INVALID": (400, "invalid repository name"),
    "NAME_UNKNOWN": (404, "repository name not known to registry"),
    # Not in the OCI spec's table; the distribution registry's code for a bad `n`.
    "PAGINATION_NUMBER_INVALID": (400, "invalid number of results requested"),
    "SIZE_INVALID": (400, "provided length did not match content length"),
    "UNAUTHORIZED": (401, "authentication required"),
    "DENIED": (403, "requested access to the resource is denied"),
    "UNSUPPORTED": (405, "the operation is unsupported"),
    "TOOMANYREQUESTS": (429, "too many requests"),
    "RANGE_INVALID": (416, "requested range not satisfiable"),
    "UNAVAILABLE": (503, "upstream unavailable"),
}


class LazyregError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] = {}


class RegistryError(LazyregError):
    def __init__(self, code: str, message: str | None = None, detail: object = None,
                 status: int | None = None) -> None:
        default_status, default_message = OCI_ERROR_CODES[code]
        super().__init__(message or default_message)
        self.code = code
        self.status = status or default_status
        self.detail = detail

    def with_headers(self, headers: dict[str, str]) -> RegistryError:
        self.headers = {**self.headers, **headers}
        return self


class ApiError(LazyregError):
    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFound(ApiError):
    status = 404

    def __init__(self, kind: str, name: object) -> None:
        super().__init__(f"{kind} {name!r} not found")


class Conflict(ApiError):
    status = 409


class InvalidField(ApiError):
    status = 400

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field=field)


class TooLarge(ApiError):
    status = 413


class TooSlow(ApiError):
    status = 408


class UnsupportedMediaType(ApiError):
    status = 415


class StorageFull(ApiError):
    status = 507


class Unauthorized(ApiError):
    status = 401

    def __init__(self, message: str, challenge: str) -> None:
        super().__init__(message)
        self.headers = {"WWW-Authenticate": challenge}


class Forbidden(ApiError):
    status = 403


class BackendUnavailable(LazyregError):
    """A part the server depends on (`part`: "database", "object store"...) cannot be reached.

    Rendered as 503 with `Retry-After` in every area: an OCI `UNAVAILABLE` body on
    /v2, a JSON body on the API, a page saying what is down elsewhere. A blip, not
    a bug: logged as one warning line, without a traceback.
    """

    status = 503

    def __init__(self, part: str, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.part = part
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}


class DatabaseUnavailable(BackendUnavailable):
    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__("database", message, retry_after)


class SecretUnavailable(LazyregError):
    """A remote's password or proxy credentials do not decrypt with the current key."""


class StorageUnavailable(OSError):
    """The blob storage cannot be reached now (an object store that is down, refuses us, or
    answers 5xx): the server's problem, rendered as 503 with `Retry-After` in one place."""

    retry_after = 10  # seconds a client is asked to wait
