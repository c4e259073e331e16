"""How disk-space operations word the sizes they report on their task's progress."""

from __future__ import annotations


def mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"
