"""Following a task until it ends: a progress bar per counter for people, silence for scripts.

The bars go to stderr, so stdout holds only the outcome. The task's progress
is whatever the server reports: a counter is `{"done": n, "total": m}`, and a
`message` is printed once each time it changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lazyreg.cli.client import CliError, quote
from lazyreg.cli.context import Cli
from lazyreg.cli.render import Output
from lazyreg.types import FINAL_STATES

POLL_INTERVAL = 0.3  # seconds between two looks at the task
MAX_BARS = 16  # counters shown; a sync reports three


def follow(cli: Cli, task: dict[str, Any]) -> dict[str, Any]:
    """Poll a task until it ends and return its last state; Ctrl-C stops the waiting only."""
    if cli.output is Output.json:
        while task["state"] not in FINAL_STATES:
            task = _next(cli, task)
        return task
    columns = (TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        bars: dict[str, Any] = {}
        message = ""
        while True:
            snapshot = task.get("progress") or {}
            for key, counter in snapshot.items():
                if not isinstance(counter, dict):
                    continue
                if key not in bars:
                    if len(bars) >= MAX_BARS:
                        continue
                    bars[key] = progress.add_task(key, total=None)
                progress.update(bars[key], completed=counter.get("done", 0),
                                total=counter.get("total") or None)
            if task["state"] in FINAL_STATES:
                return task  # its last message is what the caller reports
            if snapshot.get("message") and snapshot["message"] != message:
                message = snapshot["message"]
                progress.console.print(message, style="dim", markup=False)
            task = _next(cli, task)


def _next(cli: Cli, task: dict[str, Any]) -> dict[str, Any]:
    time.sleep(POLL_INTERVAL)
    answer: dict[str, Any] = cli.client.get(f"tasks/{quote(task['id'])}/")
    return answer


def run_task(cli: Cli, task: dict[str, Any], wait: bool, what: str,
             report: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Follow a task the server just started, then print `report(task)` (default: its
    last message), or the task with -o json whatever its end; a task that did not
    complete is an error."""
    if not wait:
        cli.emit(task, lambda t: cli.out.print(f"started task {t['id']} ({t['state']})"))
        return
    try:
        task = follow(cli, task)
    except KeyboardInterrupt:
        raise CliError(f"stopped waiting; the {what} goes on: lazyreg task show {task['id']}"
                       ) from None
    completed = task["state"] == "completed"
    if completed or cli.output is Output.json:
        message = (task.get("progress") or {}).get("message") or "done"
        cli.emit(task, report or (lambda _: cli.out.print(message, markup=False)))
    if not completed:
        raise CliError(f"{what} {task['state']}: {task.get('error') or 'no error recorded'}")
