"""`orphans/cleanup/`: a task removing content and artifacts that no version holds any more."""

from __future__ import annotations

from aiohttp import web

from lazyreg.api.http import json_object, respond
from lazyreg.api.schemas import OrphanCleanupIn
from lazyreg.api.tasks import to_out as task_out
from lazyreg.space import cleanup_orphans
from lazyreg.state import state
from lazyreg.tasks.runner import TaskContext


async def cleanup(request: web.Request) -> web.Response:
    body = OrphanCleanupIn.model_validate(await json_object(request) if request.body_exists
                                          else {})
    st = state(request)
    protection = (body.protection_time if body.protection_time is not None
                  else st.services.settings.orphan_protection_time)

    async def run(ctx: TaskContext) -> list[str]:
        await st.space.flush()  # this process's "last used" marks count
        await cleanup_orphans(ctx.services, ctx.progress, protection,
                              ctx.services.usage.is_sending)
        return []
    # One at a time across processes: two would only race for the same rows.
    task = await st.tasks.submit("orphan_cleanup", {"protection_time": protection}, run,
                                 lock_key="orphans")
    return respond(task_out(task), status=202)
