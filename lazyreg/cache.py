"""In-memory answers to the registry's lookups, so that hot reads skip the database.

What a repository version holds never changes, so those answers are kept for
good (least recently used out first). Which version a base path serves does
change: that answer is kept `ttl` seconds, and dropped at once when this
process changes a distribution or creates a version. Another process's change
is seen within `ttl`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class LookupCache:
    def __init__(self, ttl: float = 1.0, size: int = 4096) -> None:
        self.ttl = ttl
        self.size = size
        self._targets: dict[str, tuple[float, Any]] = {}
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()

    def target(self, base_path: str) -> Any | None:
        entry = self._targets.get(base_path)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put_target(self, base_path: str, target: Any) -> None:
        if len(self._targets) >= self.size:
            self._targets.clear()
        self._targets[base_path] = (time.monotonic() + self.ttl, target)

    def invalidate_targets(self) -> None:
        self._targets.clear()

    def get(self, key: Hashable) -> Any | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: Hashable, value: Any) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
