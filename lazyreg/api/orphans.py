"""`orphans/cleanup/`: a task removing content and artifacts that no version holds any more."""

from __future__ import annotations

from aiohttp import web

from lazyreg.api.http import json_object, respond
from lazyreg.api.schemas import OrphanCleanupIn
from lazyreg.api.tasks import to_out as task_out
from lazyreg.space import tasks as space_tasks
from lazyreg.state import state


async def cleanup(request: web.Request) -> web.Response:
    body = OrphanCleanupIn.model_validate(await json_object(request) if request.body_exists
                                          else {})
    st = state(request)
    protection = (body.protection_time if body.protection_time is not None
                  else st.services.settings.orphan_protection_time)
    task = await st.tasks.submit(space_tasks.ORPHAN_CLEANUP, {"protection_time": protection})
    return respond(task_out(task), status=202)
