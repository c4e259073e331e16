"""What the running application holds: services, the lazy store, the fetcher, the task runner,
the disk-space keeper."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from lazyreg.auth.service import Authenticator
from lazyreg.cache import LookupCache
from lazyreg.fetch import Fetcher, LazyStore
from lazyreg.pullthrough import PullThrough
from lazyreg.services import Services
from lazyreg.space import SpaceKeeper
from lazyreg.tasks.runner import TaskRunner


@dataclass
class AppState:
    services: Services
    fetcher: Fetcher
    tasks: TaskRunner
    lookups: LookupCache
    auth: Authenticator
    blobs: LazyStore
    pullthrough: PullThrough
    space: SpaceKeeper


STATE = web.AppKey("state", AppState)


def state(request: web.Request) -> AppState:
    return request.app[STATE]
