"""`Range` on blobs, answered the same whether the blob is stored or still being fetched.

request                                       answer
--------------------------------------------  --------------------------------------------
no `Range`                                    200, the whole blob
`bytes=a-b`, a <= b, a < size                 206, a..min(b, size - 1)
`bytes=a-`, a < size                          206, a to the end
`bytes=-n`, n > 0                             206, the last n bytes (all when n >= size)
`bytes=a-`, `bytes=a-b` with a >= size;       416 `RANGE_INVALID`
`bytes=-0`
several ranges (`bytes=0-1,5-6`), a reversed  200, the whole blob
range (`bytes=9-3`), another unit
(`items=0-1`), anything malformed
`If-Range` other than the blob's ETag         200, the whole blob

RFC 9110 lets a server ignore a `Range` it does not serve, and registry
clients only ever send one `bytes=` range, so everything else gets the whole
blob. Numbers of any length are compared without being converted past what a
size can be: `bytes=<5000 digits>-` is a start past the end, 416, not an error.
"""

from __future__ import annotations

import re

from lazyreg.errors import RegistryError

_RANGE_RE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$")
_BEYOND = 1 << 63  # more than any blob's size: what a longer number stands for


def _number(digits: str) -> int:
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) < 19 else _BEYOND


def parse_range(header: str | None, size: int, if_range: str | None = None,
                etag: str | None = None) -> tuple[int, int] | None:
    """[start, end) of the requested range, None for the whole blob; 416 when unsatisfiable."""
    if not header or (if_range is not None and if_range != etag):
        return None
    m = _RANGE_RE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if first:
        start = _number(first)
        if last and _number(last) < start:
            return None  # reversed: not a valid range, so no Range at all
        end = min(_number(last) + 1, size) if last else size
    else:
        start, end = max(size - _number(last), 0), size
    if start >= end:
        raise RegistryError("RANGE_INVALID",
                            f"range {header[:100]!r} is beyond the blob's {size} bytes",
                            detail={"size": size})
    return start, end
