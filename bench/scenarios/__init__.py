"""The scenarios; each module has `run(ctx) -> Section`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from bench.report import Section
from bench.servers import Servers

T = TypeVar("T")


@dataclass
class Context:
    servers: Servers
    reps: int
    quick: bool

    @staticmethod
    def rotated(items: Sequence[T], rep: int) -> list[T]:
        """`items` starting at a different one each repetition (interleaving, no fixed order)."""
        k = rep % len(items)
        return [*items[k:], *items[:k]]


Scenario = Callable[[Context], Section]


def registry() -> dict[str, Scenario]:
    from bench.scenarios import (
        airgap,
        cached,
        fleet,
        images,
        lazy,
        memory,
        metrics,
        objectstore,
        prefetch,
        pullthrough,
        small,
        sync,
        workers,
    )

    return {"cached": cached.run, "lazy": lazy.run, "images": images.run,
            "small": small.run, "sync": sync.run, "memory": memory.run,
            "metrics": metrics.run, "pullthrough": pullthrough.run, "airgap": airgap.run,
            "objectstore": objectstore.run, "prefetch": prefetch.run, "workers": workers.run,
            "fleet": fleet.run}
