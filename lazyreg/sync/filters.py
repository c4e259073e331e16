"""Tag selection by shell-style globs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase


def filter_tags(tags: Iterable[str], include: Sequence[str] | None,
                exclude: Sequence[str] | None) -> list[str]:
    """Tags matching any `include` glob (all when none) and no `exclude` glob."""
    selected = []
    for tag in tags:
        if include and not any(fnmatchcase(tag, pattern) for pattern in include):
            continue
        if exclude and any(fnmatchcase(tag, pattern) for pattern in exclude):
            continue
        selected.append(tag)
    return selected
