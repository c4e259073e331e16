"""Tag selection by a remote's include/exclude patterns (`lazyreg.oci.tagfilter`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from lazyreg.oci.tagfilter import TagFilter


def filter_tags(tags: Iterable[str], include: Sequence[str] | None,
                exclude: Sequence[str] | None) -> list[str]:
    """Tags matching any `include` pattern (all when none) and no `exclude` pattern."""
    return TagFilter.of(include, exclude).select(tags)
