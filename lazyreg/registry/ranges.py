"""The one `Range` form registry clients send: a single `bytes=` range."""

from __future__ import annotations

import re

from lazyreg.errors import RegistryError

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) of the requested range, None for the whole body; 416 when unsatisfiable."""
    if not header:
        return None
    m = _RANGE_RE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None  # not a form we serve partially: send the whole body (RFC 9110 allows it)
    first, last = m.group(1), m.group(2)
    if first:
        start = int(first)
        end = min(int(last) + 1, size) if last else size
        if last and int(last) < start:
            return None
    else:
        start, end = max(size - int(last), 0), size
    if start >= size or start >= end:
        raise RegistryError("RANGE_INVALID", f"range {header!r} is beyond the blob's {size} bytes",
                            detail={"size": size})
    return start, end
