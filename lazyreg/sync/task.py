"""The `sync` task kind: what a `POST repositories/<name>/sync/` starts.

Registered with the task runner by the application (`register`); the API
submits `("sync", params)` with the params the task row keeps:
`{"repository", "remote", "mirror"[, "strict"]}`. One sync per repository
runs at a time, across processes (the lock key `repository:<name>`).
"""

from __future__ import annotations

from collections.abc import Callable

from lazyreg.fetch import Fetcher
from lazyreg.services import Services
from lazyreg.sync.pipeline import sync_repository
from lazyreg.taskcontext import Params, TaskContext, TaskKinds

KIND = "sync"


def params(repository: str, remote: str, mirror: bool, strict: bool) -> dict[str, object]:
    """The params of a sync task, as its row shows them."""
    out: dict[str, object] = {"repository": repository, "remote": remote, "mirror": mirror}
    if strict:
        out["strict"] = True
    return out


def lock_key(p: Params) -> str:
    return f"repository:{p['repository']}"


def register(kinds: TaskKinds, services: Services, fetcher: Fetcher,
             synced: Callable[[], None] = lambda: None) -> None:
    """Make `sync` a task kind; `synced` runs after each sync that completed."""
    async def run(ctx: TaskContext, p: Params) -> list[str]:
        created = await sync_repository(
            ctx, services, fetcher, str(p["repository"]), str(p["remote"]),
            mirror=bool(p.get("mirror", False)), strict=bool(p.get("strict", False)))
        synced()
        return created
    kinds.register(KIND, run, lock=lock_key)
