"""What a long disk-space operation reports its progress to (the task runner's `Progress`)."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    message: str

    def add_total(self, name: str, n: int = 1) -> None: ...

    def advance(self, name: str, n: int = 1) -> None: ...


def mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"
