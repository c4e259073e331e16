"""Tag selection: shell-style globs, `re:` regular expressions, and pinned digests.

A remote's `include_tags`/`exclude_tags` hold patterns of three kinds:

- a glob (`v1.*`, `*-alpine`), matched with `fnmatchcase` against the whole tag;
- `re:` and a regular expression (`re:^v1\\.[0-9]+$`), matched against the whole
  tag (as `fullmatch`: `^` and `$` are allowed and change nothing);
- in `include_tags` only, a digest (`sha256:…`): that manifest is pinned, even
  untagged. A digest selects no tag: `include_tags: ["sha256:…"]` alone syncs
  that manifest and no tag.

Regular expressions are compiled with RE2 (the `google-re2` binding), never
Python's `re`: RE2 matches in time linear in the tag's length whatever the
pattern (no backtracking: `(a+)+$` costs what `a+$` costs), and refuses at
compile time what would need backtracking (back-references, look-arounds).
A pattern is at most MAX_PATTERN_LENGTH characters and compiles into at most
RE2_MAX_MEM bytes, and a tag is at most 128 characters, so one match is bounded
by construction, not by a timeout.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any

from lazyreg.oci.digest import is_valid_digest

REGEX_PREFIX = "re:"
MAX_PATTERN_LENGTH = 255
RE2_MAX_MEM = 1 << 20  # bytes one compiled pattern may take (RE2's default is 8 MiB)


class BadPattern(ValueError):
    """A pattern that cannot be compiled: the message names it and says why."""


def is_regex(pattern: str) -> bool:
    return pattern.startswith(REGEX_PREFIX)


def is_digest_pattern(pattern: str) -> bool:
    return ":" in pattern and not is_regex(pattern)


def _options(re2: Any) -> Any:
    options = re2.Options()
    options.max_mem = RE2_MAX_MEM
    options.log_errors = False
    return options


@lru_cache(maxsize=1024)
def compile_regex(pattern: str) -> Any:
    """The compiled RE2 of a `re:` pattern; BadPattern when RE2 refuses it."""
    import re2  # type: ignore[import-untyped]  # here: 2.6 MiB a server with no `re:` never needs

    source = pattern.removeprefix(REGEX_PREFIX)
    if not source:
        raise BadPattern(f"{pattern!r}: the regular expression after 're:' is empty")
    try:
        return re2.compile(source, _options(re2))
    except re2.error as exc:
        raise BadPattern(f"{pattern!r}: not a regular expression RE2 accepts: {exc}") from None


def regex_error(pattern: str) -> str | None:
    """Why a `re:` pattern is refused, or None."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"a pattern has at most {MAX_PATTERN_LENGTH} characters"
    try:
        compile_regex(pattern)
    except BadPattern as exc:
        return str(exc)
    return None


def digest_error(pattern: str) -> str | None:
    if not is_valid_digest(pattern):
        return (f"{pattern!r}: a ':' makes this a digest to pin, and it is not a valid"
                " digest (algorithm:hex)")
    return None


def _matches(tag: str, pattern: str) -> bool:
    if is_regex(pattern):
        return compile_regex(pattern).fullmatch(tag) is not None
    return fnmatchcase(tag, pattern)


@dataclass(frozen=True)
class TagFilter:
    """The compiled form of a remote's include/exclude lists."""

    include: tuple[str, ...] = ()  # globs and regexes (digests apart)
    exclude: tuple[str, ...] = ()
    pinned: tuple[str, ...] = ()  # digests of include_tags
    any_include: bool = False  # include_tags was given (non-empty)

    @classmethod
    def of(cls, include: Sequence[str] | None, exclude: Sequence[str] | None) -> TagFilter:
        include = list(include or ())
        return cls(include=tuple(p for p in include if not is_digest_pattern(p)),
                   exclude=tuple(p for p in exclude or () if not is_digest_pattern(p)),
                   pinned=tuple(dict.fromkeys(p for p in include if is_digest_pattern(p))),
                   any_include=bool(include))

    def allows(self, tag: str) -> bool:
        """Whether `tag` matches an include pattern (any, with none given) and no exclude."""
        if self.any_include and not any(_matches(tag, p) for p in self.include):
            return False
        return not any(_matches(tag, p) for p in self.exclude)

    def select(self, tags: Iterable[str]) -> list[str]:
        return [t for t in tags if self.allows(t)]
