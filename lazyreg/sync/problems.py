"""What a sync skipped and why: the task's `warnings`, or its failure when strict.

A problem confined to one tag (a malformed or oversized manifest, a child the
upstream does not have, bytes that do not match their digest, an invalid tag
name) skips that tag. With `strict`, the first one fails the whole sync
instead, before anything is written. At most MAX_WARNINGS are kept, then a count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lazyreg.oci.manifest import InvalidManifest
from lazyreg.sync.closure import ClosureError
from lazyreg.upstream.errors import DigestMismatch, InvalidResponse, NotFound, Stalled

MAX_WARNINGS = 100

# Errors that concern one tag (or one referrer), not the upstream as a whole.
ITEM_ERRORS = (NotFound, InvalidResponse, DigestMismatch, InvalidManifest, ClosureError, Stalled)


class StrictSyncFailed(Exception):
    """A strict sync met a broken tag."""


class NothingSynced(Exception):
    """Every selected tag was broken: nothing to write."""


@dataclass
class Problems:
    strict: bool = False
    warnings: list[str] = field(default_factory=list)
    count: int = 0

    def skip(self, what: str, why: BaseException | str) -> None:
        reason = why if isinstance(why, str) else (str(why) or type(why).__name__)
        message = f"{what} skipped: {reason}"
        if self.strict:
            raise StrictSyncFailed(f"{message} (strict sync: no version written)")
        self.count += 1
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)

    def as_list(self) -> list[str]:
        more = self.count - len(self.warnings)
        return [*self.warnings, f"… and {more} more"] if more > 0 else list(self.warnings)
