"""`repositories/<name>/versions/<n>/export/` and `repositories/<name>/import/`: the air gap.

Both name a path on the server's own filesystem, as Pulp's exporters do: the
archive can be far bigger than a request body should be. The path must be
absolute and, when `transfer_paths` is set, below one of those directories;
with it unset, any path is allowed with auth off (the server listens on
loopback only) and none with auth on. An import into a repository that does
not exist creates it, when it writes its version (a refused import creates nothing).
"""

from __future__ import annotations

import os
from pathlib import Path

from aiohttp import web
from sqlalchemy.orm import Session

from lazyreg.api.http import parse_body, parse_int, path_name, read, respond
from lazyreg.api.lookup import by_name, version_row
from lazyreg.api.schemas import ExportIn, ImportIn, RepositoryIn
from lazyreg.api.tasks import to_out as task_out
from lazyreg.config import Settings
from lazyreg.db.models import Repository
from lazyreg.errors import InvalidField
from lazyreg.state import state
from lazyreg.transfer import tasks as transfer_tasks
from lazyreg.transfer.layout import kind_of


def allowed_path(settings: Settings, raw: str, field: str) -> Path:
    """`raw` as an absolute, normalised path the settings allow; InvalidField otherwise."""
    if "\x00" in raw or not os.path.isabs(raw):
        raise InvalidField(field, f"{field}: give an absolute path on the server, not {raw!r}")
    path = Path(os.path.normpath(raw))
    roots = settings.transfer_paths
    if roots is None:
        if settings.auth_enabled:
            raise InvalidField(field, f"{field}: exports and imports are off: set"
                               " transfer_paths (LAZYREG_TRANSFER_PATHS) to the directories"
                               " they may use")
        return path
    real = Path(os.path.realpath(path))
    if not any(real.is_relative_to(os.path.realpath(root)) for root in roots):
        raise InvalidField(field, f"{field}: {path} is not below any of transfer_paths"
                           f" ({', '.join(str(r) for r in roots)})")
    return path


async def export(request: web.Request) -> web.Response:
    name = path_name(request)
    number = parse_int("number", request.match_info["number"])
    body = await parse_body(request, ExportIn)
    output = allowed_path(state(request).services.settings, body.output, "output")
    if output.exists() or output.with_name(output.name + ".part").exists():
        raise InvalidField("output", f"output: {output} already exists")
    if not output.parent.is_dir():
        raise InvalidField("output", f"output: no directory {output.parent}")

    def check(session: Session) -> None:
        repository = by_name(session, Repository, name)
        version_row(session, repository, number)
        if body.since is not None:
            if body.since >= number:
                raise InvalidField("since", f"since: version {body.since} is not older than"
                                   f" version {number}")
            version_row(session, repository, body.since)
    await read(request, check)
    params: dict[str, object] = {"repository": name, "version": number, "output": str(output),
                                 "format": kind_of(output)}
    if body.since is not None:
        params["since"] = body.since
    if body.stored_only:
        params["stored_only"] = True
    task = await state(request).tasks.submit(transfer_tasks.EXPORT, params)
    return respond(task_out(task), status=202)


async def import_(request: web.Request) -> web.Response:
    name = path_name(request)
    body = await parse_body(request, ImportIn)
    source = allowed_path(state(request).services.settings, body.input, "input")
    if not source.exists():
        raise InvalidField("input", f"input: {source} does not exist")
    if not (source.is_file() or source.is_dir()):  # a FIFO or a device would never end
        raise InvalidField("input", f"input: {source} is neither a file nor a directory")

    RepositoryIn(name=name)  # the import creates the repository if needed: a valid name
    task = await state(request).tasks.submit(transfer_tasks.IMPORT,
                                             {"repository": name, "input": str(source)})
    return respond(task_out(task), status=202)
