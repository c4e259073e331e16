"""Checks of /v2 request inputs: each malformed one is a 4xx OCI error, never a 500."""

from __future__ import annotations

import re

from lazyreg.errors import RegistryError
from lazyreg.oci.digest import InvalidDigest, parse_digest

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def digest_param(value: str) -> str:
    """`value` if it is a digest lazyreg serves, else 400 DIGEST_INVALID."""
    try:
        return parse_digest(value)
    except InvalidDigest as exc:
        raise RegistryError("DIGEST_INVALID", str(exc), detail={"digest": value[:300]}) from None


def text_param(name: str, value: str | None, max_length: int = 1024) -> str | None:
    """A free-text query parameter (None when absent or empty), else 400 naming it.

    Control characters are refused: no name holds one, and PostgreSQL refuses NUL.
    """
    if not value:
        return None
    if len(value) > max_length or _CONTROL.search(value):
        raise RegistryError("UNSUPPORTED", f"invalid {name}=: longer than {max_length}"
                            " characters or holds control characters", status=400,
                            detail={"parameter": name})
    return value
