"""The `export` and `import` task kinds, registered with the task runner.

`("export", {"repository", "version", "output"[, "since"][, "stored_only"]})`
runs without a lock: it only reads, and a long export must not hold syncs back.
`("import", {"repository", "input"})` holds the repository's lock key, as a
sync does: two writers of one repository's versions never run at once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from lazyreg.fetch import LazyStore
from lazyreg.services import Services
from lazyreg.sync.pending import PendingManifests
from lazyreg.taskcontext import Params, TaskContext, TaskKinds

EXPORT = "export"
IMPORT = "import"


def register(kinds: TaskKinds, services: Services, lazy: LazyStore,
             imported: Callable[[], None] = lambda: None,
             pending: PendingManifests | None = None) -> None:
    """Make `export` and `import` task kinds; `imported` runs after an import wrote a version."""
    # The export and import code (tarfile among it) loads at the first such task: a
    # server that never runs one does not carry it.
    async def run_export(ctx: TaskContext, p: Params) -> list[str]:
        from lazyreg.transfer.export import export_version

        since = p.get("since")
        await export_version(services, lazy, ctx.progress, str(p["repository"]),
                             int(p["version"]), Path(str(p["output"])),
                             since=None if since is None else int(since),
                             stored_only=bool(p.get("stored_only", False)),
                             pending=pending or PendingManifests(services))
        return []

    async def run_import(ctx: TaskContext, p: Params) -> list[str]:
        from lazyreg.transfer.importer import import_layout

        name = str(p["repository"])
        number, warnings = await import_layout(services, ctx.progress, name,
                                               Path(str(p["input"])), ctx.task_id)
        ctx.warnings.extend(warnings)
        if number is None:
            return []
        imported()
        return [f"repositories/{quote(name, safe='')}/versions/{number}/"]

    kinds.register(EXPORT, run_export)
    kinds.register(IMPORT, run_import, lock=lambda p: f"repository:{p['repository']}")
