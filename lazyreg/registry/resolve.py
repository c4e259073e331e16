"""From a /v2 name to the repository version its distribution serves.

A `Target` names its repository by `uid`, which is never reused (database ids
are: SQLite hands a deleted row's id to the next insert). Cached answers are
keyed by the Target, so they die with the repository they describe.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, exists, func, select
from sqlalchemy.orm import Session, aliased

from lazyreg.db import content as q
from lazyreg.db.models import Distribution, Repository, RepositoryVersion
from lazyreg.errors import RegistryError
from lazyreg.oci.names import is_repository_name
from lazyreg.state import AppState


@dataclass(frozen=True)
class Target:
    repository_uid: str
    repository_id: int
    version: int
    private: bool = False  # pulled only with a token for its scope (`registry.access`)


def members(target: Target) -> Select[int]:
    """The content ids of the target's version, as a subquery.

    Empty once the repository is gone, even if a new one has its id: a target
    read before a delete (another process's, for up to the re-read interval)
    finds nothing rather than the new repository's content.
    """
    same_repository = exists().where(Repository.id == target.repository_id,
                                     Repository.uid == target.repository_uid)
    return q.in_version(target.repository_id, target.version).where(same_repository)


def resolve(session: Session, base_path: str) -> Target:
    if not is_repository_name(base_path):
        raise RegistryError("NAME_INVALID", f"invalid repository name {base_path[:300]!r}")
    # One statement, so that a concurrent delete cannot fall between two reads.
    pinned = aliased(RepositoryVersion)
    row = session.execute(
        select(Repository.uid, Repository.id, Repository.latest_version, pinned.number,
               Distribution.private)
        .select_from(Distribution)
        .outerjoin(pinned, pinned.id == Distribution.repository_version_id)
        .join(Repository,
              Repository.id == func.coalesce(pinned.repository_id, Distribution.repository_id))
        .where(Distribution.base_path == base_path)).first()
    if row is None:
        raise RegistryError("NAME_UNKNOWN", f"repository {base_path!r} not known to registry",
                            detail={"name": base_path})
    uid, repository_id, latest, pinned_number, private = row
    return Target(uid, repository_id, latest if pinned_number is None else pinned_number,
                  private)


async def target_of(app: AppState, base_path: str) -> Target:
    """The version `base_path` serves, from the lookup cache when it is fresh."""
    target: Target | None = app.lookups.target(base_path)
    if target is None:
        generation = app.lookups.generation
        target = await app.services.db.read(lambda s: resolve(s, base_path))
        app.lookups.put_target(base_path, target, generation)
    return target

