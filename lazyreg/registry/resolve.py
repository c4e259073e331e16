"""From a /v2 name to the repository version its distribution serves."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from lazyreg.db.models import Distribution, Repository, RepositoryVersion
from lazyreg.errors import RegistryError
from lazyreg.oci.names import is_repository_name
from lazyreg.state import AppState


@dataclass(frozen=True)
class Target:
    repository_id: int
    version: int
    private: bool = False  # pulled only with a token for its scope (`registry.access`)


def resolve(session: Session, base_path: str) -> Target:
    if not is_repository_name(base_path):
        raise RegistryError("NAME_INVALID", f"invalid repository name {base_path!r}")
    dist = session.scalar(select(Distribution).where(Distribution.base_path == base_path))
    if dist is None:
        raise RegistryError("NAME_UNKNOWN", f"repository {base_path!r} not known to registry",
                            detail={"name": base_path})
    if dist.repository_version_id is not None:
        pinned = session.get_one(RepositoryVersion, dist.repository_version_id)
        return Target(pinned.repository_id, pinned.number, dist.private)
    repo = session.get_one(Repository, dist.repository_id)
    return Target(repo.id, repo.latest_version, dist.private)


async def target_of(app: AppState, base_path: str) -> Target:
    """The version `base_path` serves, from the lookup cache when it is fresh."""
    target: Target | None = app.lookups.target(base_path)
    if target is None:
        target = await app.services.db.read(lambda s: resolve(s, base_path))
        app.lookups.put_target(base_path, target)
    return target
