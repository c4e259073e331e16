"""From a /v2 name to the repository version its distribution serves.

A `Target` names its repository by `uid`, which is never reused (database ids
are: SQLite hands a deleted row's id to the next insert). Cached answers are
keyed by the Target, so they die with the repository they describe.

A name under a pull-through distribution (`lazyreg.db.routing`) resolves to a
Target carrying its `Mirror`; before the first pull of that name there is no
repository yet (`repository_uid` is empty): `route_of` says so, `target_of`
answers NAME_UNKNOWN.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import Select, exists, func, select
from sqlalchemy.orm import Session, aliased

from lazyreg.accounting import label_distribution
from lazyreg.db import content as q
from lazyreg.db import routing
from lazyreg.db.models import Distribution, Repository, RepositoryVersion
from lazyreg.db.routing import Target
from lazyreg.errors import DatabaseUnavailable, RegistryError
from lazyreg.oci.names import is_repository_name
from lazyreg.state import AppState

__all__ = ["Target", "members", "resolve", "route_of", "served", "target_of"]


def members(target: Target) -> Select[int]:
    """The content ids of the target's version, as a subquery.

    Empty once the repository is gone, even if a new one has its id: a target
    read before a delete (another process's, for up to the re-read interval)
    finds nothing rather than the new repository's content.
    """
    same_repository = exists().where(Repository.id == target.repository_id,
                                     Repository.uid == target.repository_uid)
    return q.in_version(target.repository_id, target.version).where(same_repository)


def _unknown(name: str) -> RegistryError:
    return RegistryError("NAME_UNKNOWN", f"repository {name!r} not known to registry",
                         detail={"name": name})


def resolve(session: Session, name: str) -> Target:
    if not is_repository_name(name):
        raise RegistryError("NAME_INVALID", f"invalid repository name {name[:300]!r}")
    # One statement, so that a concurrent delete cannot fall between two reads.
    pinned = aliased(RepositoryVersion)
    row = session.execute(
        select(Repository.uid, Repository.id, Repository.latest_version, pinned.number,
               Distribution.private)
        .select_from(Distribution)
        .outerjoin(pinned, pinned.id == Distribution.repository_version_id)
        .join(Repository,
              Repository.id == func.coalesce(pinned.repository_id, Distribution.repository_id))
        .where(Distribution.base_path == name, Distribution.pull_through.is_(False))).first()
    if row is not None:
        uid, repository_id, latest, pinned_number, private = row
        return Target(uid, repository_id, latest if pinned_number is None else pinned_number,
                      private)
    found = routing.pull_through_for(session, name)
    if found is None:
        raise _unknown(name)
    dist, upstream_name = found
    mirror = routing.mirror_of(session, dist, upstream_name)
    repository = routing.pulled_repository(session, mirror)
    if repository is None:
        return Target("", 0, 0, dist.private, mirror)
    return Target(repository.uid, repository.id, repository.latest_version, dist.private,
                  mirror)


async def route_of(app: AppState, name: str) -> Target:
    """What serves `name`, from the lookup cache when it is fresh; under a pull-through
    distribution, possibly a Target without a repository yet.

    Cached answers are used only while the change feed says this process is in
    step with the others (`ChangeFeed.serving`): a process cut off from the
    database for longer than the feed's grace reads anew, or answers 503. Within
    the grace, a database that cannot be reached is answered from the last
    answer kept, fresh or not (all the pulls that follow are then served from
    memory and storage).
    """
    feed = app.changes
    if feed.serving:
        target: Target | None = app.lookups.target(name)
        if target is None and not feed.reachable:  # do not wait on a database known down
            target = app.lookups.kept_target(name)
        if target is not None:
            _label(target, name)
            return target
    # Requests that miss together (when the answer expires) share one read.
    flight = app.lookups.target_flight(
        name, lambda: app.services.db.read(lambda s: resolve(s, name)))
    try:
        found: Target = await asyncio.shield(flight)
    except DatabaseUnavailable:
        kept: Target | None = app.lookups.kept_target(name) if feed.serving else None
        if kept is None:
            raise
        _label(kept, name)
        return kept
    _label(found, name)
    return found


def _label(target: Target, name: str) -> None:
    """Name the distribution in the request's upstream accounting: its base path."""
    mirror = target.mirror
    if mirror is None:
        label_distribution(name)  # a resolved name is a distribution's base path
    else:
        label_distribution(name[:len(name) - len(mirror.upstream_name)].rstrip("/"))


def served(target: Target, name: str) -> Target:
    """`target` (what `route_of` found for `name`) if it has a version to serve; else
    NAME_UNKNOWN (a pull-through name before its first pull)."""
    if not target.repository_uid:
        raise _unknown(name)
    return target


async def target_of(app: AppState, name: str) -> Target:
    """The version `name` serves; NAME_UNKNOWN before the first pull of a pull-through name."""
    return served(await route_of(app, name), name)

