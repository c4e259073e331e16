"""The disk-space task kinds: `reclaim` and `orphan_cleanup`, registered with the task runner.

The API submits `("reclaim", {"repository": NAME})`, which waits for a sync of
the same repository (lock key `repository:<name>`), and
`("orphan_cleanup", {"protection_time": SECONDS})`, one at a time across
processes (lock key `orphans`: two would only race for the same rows).
"""

from __future__ import annotations

from lazyreg.services import Services
from lazyreg.space.cache import SpaceKeeper
from lazyreg.space.orphans import cleanup_orphans
from lazyreg.space.reclaim import reclaim
from lazyreg.taskcontext import Params, TaskContext, TaskKinds

RECLAIM = "reclaim"
ORPHAN_CLEANUP = "orphan_cleanup"


def register(kinds: TaskKinds, services: Services, space: SpaceKeeper) -> None:
    async def run_reclaim(ctx: TaskContext, p: Params) -> list[str]:
        await space.flush()  # busy marks of transfers that ended here are cleared
        await reclaim(services, ctx.progress, str(p["repository"]), services.usage.is_sending)
        return []

    async def run_cleanup(ctx: TaskContext, p: Params) -> list[str]:
        await space.flush()  # this process's "last used" marks count
        # A blob a sync reuses after that flush is known here only.
        await cleanup_orphans(services, ctx.progress, float(p["protection_time"]),
                              services.usage.is_recent)
        return []

    kinds.register(RECLAIM, run_reclaim, lock=lambda p: f"repository:{p['repository']}")
    kinds.register(ORPHAN_CLEANUP, run_cleanup, lock=lambda p: "orphans")
