"""What the running application holds: services, the lazy store, the fetcher, the task runner,
the disk-space keeper.

The /v2 and /api/v1 handlers reach everything through `state(request)`. The
task runner is seen through `Tasks`, what handlers do with it, so that this
module (and the registry handlers below the task layer) do not import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from lazyreg.auth.service import Authenticator
from lazyreg.cache import LookupCache
from lazyreg.db.changes import ChangeFeed
from lazyreg.db.models import Task
from lazyreg.fetch import Fetcher, LazyStore
from lazyreg.fetch.prefetch import Prefetcher
from lazyreg.pullthrough import PullThrough
from lazyreg.services import Services
from lazyreg.space import SpaceKeeper
from lazyreg.sync.pending import PendingManifests


class Tasks(Protocol):
    """The task runner (`lazyreg.tasks.runner.TaskRunner`), as handlers use it."""

    async def submit(self, kind: str, params: dict[str, Any]) -> Task:
        """Record a task of a registered kind and start it; its row."""
        ...

    async def submit_once(self, kind: str, params: dict[str, Any]) -> tuple[Task, bool]:
        """`submit`, unless a task of the same lock key is active: then that one (and False)."""
        ...

    async def wait(self, task_id: str) -> None:
        """Until the task, if it runs in this process, has ended."""
        ...


@dataclass
class AppState:
    services: Services
    fetcher: Fetcher
    tasks: Tasks
    lookups: LookupCache
    auth: Authenticator
    blobs: LazyStore
    pullthrough: PullThrough
    space: SpaceKeeper
    # What other processes changed; whether cached answers may still be used.
    changes: ChangeFeed
    pending: PendingManifests  # manifests the platform filter left, fetched on demand
    prefetch: Prefetcher  # a remote's `prefetch`: layers started on a manifest's first GET


STATE = web.AppKey("state", AppState)


def state(request: web.Request) -> AppState:
    return request.app[STATE]
