"""What a background task's body gets while it runs, and how a kind of task is registered.

A leaf module: it imports nothing of lazyreg. A layer with long operations
(`sync`, and any other) defines its task kinds against these types and hands
them to whatever registers kinds (`TaskKinds`), without importing the task
layer; the task runner runs them without importing that layer. The runner is
the one `TaskKinds` of the application (`lazyreg.tasks.runner.TaskRunner`).

A body gets its `TaskContext` and the task's params as stored in its row
(JSON: they are what the task was asked to do, and what a viewer sees); it
returns the resources it created (paths such as `repositories/x/versions/3/`).
It reports how far it is on `progress` and what it skipped in `warnings`,
which are saved with the task whether it completes or fails.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Progress:
    """Named counters (done of total) and a message; the runner saves snapshots of it."""

    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    message: str = ""

    def _counter(self, name: str) -> dict[str, int]:
        return self.counters.setdefault(name, {"done": 0, "total": 0})

    def add_total(self, name: str, n: int = 1) -> None:
        self._counter(name)["total"] += n

    def advance(self, name: str, n: int = 1) -> None:
        self._counter(name)["done"] += n

    def snapshot(self) -> dict[str, Any]:
        snap: dict[str, Any] = {k: dict(v) for k, v in self.counters.items()}
        if self.message:
            snap["message"] = self.message
        return snap


@dataclass
class TaskContext:
    task_id: str
    progress: Progress = field(default_factory=Progress)
    # What the task skipped and why; saved with the task whether it completes or fails.
    warnings: list[str] = field(default_factory=list)


Params = Mapping[str, Any]
TaskBody = Callable[[TaskContext, Params], Awaitable[list[str]]]
# The key a task holds while it runs: two tasks with the same key never run at
# once, in any process. None: the task runs without one.
LockKey = Callable[[Params], str | None]


class TaskKinds(Protocol):
    def register(self, kind: str, body: TaskBody, *, lock: LockKey | None = None) -> None:
        """Make `kind` runnable: tasks submitted as `kind` run `body`."""
        ...
