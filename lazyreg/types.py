"""Values the server and its clients agree on: a remote's policy and a task's state.

A leaf module: it imports nothing of lazyreg, so the API schemas, the task
runner and the CLI (which knows the server only through REST) share one
definition. They are `Literal` types, not enums, so that a value read from the
database or from JSON is already one of them, and the OpenAPI document shows
them inline as `enum` lists.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

Policy = Literal["immediate", "on_demand", "streamed"]
TaskState = Literal["waiting", "running", "completed", "failed", "canceled"]

POLICIES: Final[tuple[Policy, ...]] = get_args(Policy)
TASK_STATES: Final[tuple[TaskState, ...]] = get_args(TaskState)
# A task in one of these states has ended: it changes no more.
FINAL_STATES: Final[frozenset[TaskState]] = frozenset({"completed", "failed", "canceled"})
ACTIVE_STATES: Final[frozenset[TaskState]] = frozenset(TASK_STATES) - FINAL_STATES
