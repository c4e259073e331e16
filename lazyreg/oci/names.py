"""Repository names, tags and references, per the distribution spec grammar.

Patterns end in `\\Z`, not `$` (which accepts a trailing newline): a name or tag
with a newline is invalid whether a caller uses `match` or `fullmatch`.
"""

from __future__ import annotations

import re

# path-component ("/" path-component)*, each component [a-z0-9]+ with separators.
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*\Z")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z")
# Names of remotes, repositories and distributions in the management API.
RESOURCE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}\Z")
MAX_NAME_LENGTH = 255


def is_repository_name(value: str) -> bool:
    return len(value) <= MAX_NAME_LENGTH and bool(NAME_RE.fullmatch(value))


def is_tag(value: str) -> bool:
    return bool(TAG_RE.fullmatch(value))


def is_resource_name(value: str) -> bool:
    return bool(RESOURCE_NAME_RE.fullmatch(value))
