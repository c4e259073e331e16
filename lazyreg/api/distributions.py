"""`distributions/`: publish a repository (its latest or a pinned version) at a base path,
or, with `pull_through`, a remote's whole upstream under a base path (maybe empty).

A private distribution is pulled only by admins and the users in its `readers`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from lazyreg.api import paging
from lazyreg.api.http import json_object, no_content, parse_body, path_name, read, respond, write
from lazyreg.api.lookup import ensure_unique, referenced
from lazyreg.api.schemas import DistributionIn, DistributionOut, Page
from lazyreg.auth.users import readers_of
from lazyreg.db.models import (
    Distribution,
    DistributionReader,
    Remote,
    Repository,
    RepositoryVersion,
    User,
)
from lazyreg.errors import Conflict, InvalidField, NotFound

Joined = tuple[Distribution, str | None, int | None, str | None]


def _joined() -> Select[Distribution, str, int, str]:
    # Outer joins: the names and the number are None when the distribution has none.
    return (select(Distribution, Repository.name, RepositoryVersion.number, Remote.name)
            .outerjoin(Repository, Repository.id == Distribution.repository_id)
            .outerjoin(RepositoryVersion,
                       RepositoryVersion.id == Distribution.repository_version_id)
            .outerjoin(Remote, Remote.id == Distribution.remote_id))


def _out(session: Session, dist: Distribution, repository: str | None,
         version: int | None, remote: str | None) -> DistributionOut:
    return DistributionOut(name=dist.name, base_path=dist.base_path,
                           repository=repository or "", repository_version=version,
                           private=dist.private, readers=readers_of(session, dist.id),
                           anonymous_pull_through=dist.anonymous_pull_through,
                           pull_through=dist.pull_through, remote=remote,
                           created=dist.created)


def _set_readers(session: Session, dist: Distribution, names: list[str]) -> None:
    wanted = set(names)
    users = dict(session.execute(select(User.username, User.id)
                                 .where(User.username.in_(wanted))).all())
    unknown = sorted(wanted - set(users))
    if unknown:
        raise InvalidField("readers", f"no such user: {', '.join(unknown[:5])}")
    current = set(session.scalars(select(DistributionReader.user_id).where(
        DistributionReader.distribution_id == dist.id)))
    for user_id in current - set(users.values()):
        session.delete(session.get_one(DistributionReader, (dist.id, user_id)))
    for user_id in set(users.values()) - current:
        session.add(DistributionReader(distribution_id=dist.id, user_id=user_id))
    session.flush()


def _load(session: Session, name: str) -> Joined:
    row = session.execute(_joined().where(Distribution.name == name)).first()
    if row is None:
        raise NotFound("distribution", name)
    dist, repository, version, remote = row
    return dist, repository, version, remote


def _check_kind(values: DistributionIn) -> None:
    """A pull-through distribution has a remote and no repository; any other, the reverse."""
    if values.pull_through:
        if values.remote is None:
            raise InvalidField("remote", "a pull-through distribution needs the remote to pull"
                               " through")
        if values.repository is not None or values.repository_version is not None:
            raise InvalidField("repository", "a pull-through distribution serves the"
                               " repositories it creates, not a given one")
        return
    if values.remote is not None:
        raise InvalidField("remote", "only a pull-through distribution has a remote"
                           " (pull_through: true)")
    if values.repository is None:
        raise InvalidField("repository", "required (unless pull_through is true)")
    if values.base_path == "":
        raise InvalidField("base_path", "empty only for a pull-through distribution: must be a"
                           " repository name")


def _assign_pull_through(session: Session, dist: Distribution, values: DistributionIn
                         ) -> DistributionOut:
    assert values.remote is not None
    remote = referenced(session, Remote, values.remote, "remote")
    dist.name, dist.base_path, dist.private = values.name, values.base_path, values.private
    dist.anonymous_pull_through = values.anonymous_pull_through
    dist.pull_through, dist.remote_id = True, remote.id
    dist.repository_id, dist.repository_version_id = None, None
    session.add(dist)
    session.flush()
    _set_readers(session, dist, values.readers)
    return _out(session, dist, None, None, remote.name)


def _no_version(session: Session, repository: Repository, number: int) -> str:
    """Why a distribution cannot pin `number`: never created, or deleted (and what is left)."""
    message = f"repository {repository.name!r} has no version {number}"
    if number > repository.latest_version:
        return f"{message}: its latest is {repository.latest_version}"
    kept = list(session.scalars(select(RepositoryVersion.number).where(
        RepositoryVersion.repository_id == repository.id).order_by(RepositoryVersion.number)))
    shown = ", ".join(map(str, kept[:10])) + (", …" if len(kept) > 10 else "")
    why = (f"retain_versions keeps the newest {repository.retain_versions}"
           if repository.retain_versions else "it was deleted")
    return f"{message} any more ({why}); it has versions {shown}"


def _assign(session: Session, dist: Distribution, values: DistributionIn) -> DistributionOut:
    _check_kind(values)
    ensure_unique(session, Distribution, values.name, dist.id)
    holder = session.scalar(select(Distribution.name).where(
        Distribution.base_path == values.base_path, Distribution.id != dist.id))
    if holder is not None:
        raise Conflict(f"base_path {values.base_path!r} is already served by distribution"
                       f" {holder!r}", field="base_path")
    if values.pull_through:
        return _assign_pull_through(session, dist, values)
    assert values.repository is not None
    repository = referenced(session, Repository, values.repository, "repository")
    version_id = None
    if values.repository_version is not None:
        version_id = session.scalar(select(RepositoryVersion.id).where(
            RepositoryVersion.repository_id == repository.id,
            RepositoryVersion.number == values.repository_version))
        if version_id is None:
            raise InvalidField("repository_version",
                               _no_version(session, repository, values.repository_version))
    dist.name, dist.base_path, dist.private = values.name, values.base_path, values.private
    dist.anonymous_pull_through = values.anonymous_pull_through
    dist.pull_through, dist.remote_id = False, None
    # The repository is kept even when a version is pinned, so that unpinning
    # (repository_version: null) knows which repository's latest to follow.
    dist.repository_id, dist.repository_version_id = repository.id, version_id
    session.add(dist)
    session.flush()
    _set_readers(session, dist, values.readers)
    return _out(session, dist, repository.name, values.repository_version, None)


async def create(request: web.Request) -> web.Response:
    body = await parse_body(request, DistributionIn)
    return respond(await write(request, lambda s: _assign(s, Distribution(), body)), status=201)


async def list_(request: web.Request) -> web.Response:
    window = paging.Window.of(request)

    def query(session: Session) -> tuple[int, list[DistributionOut]]:
        count, rows = paging.fetch(session, _joined().order_by(Distribution.name), window)
        return count, [_out(session, *row) for row in rows]
    count, results = await read(request, query)
    return respond(Page[DistributionOut](**paging.envelope(request, window, count),
                                         results=results))


async def show(request: web.Request) -> web.Response:
    name = path_name(request)
    return respond(await read(request, lambda s: _out(s, *_load(s, name))))


async def update(request: web.Request) -> web.Response:
    name = path_name(request)
    given = await json_object(request)

    def apply(session: Session) -> DistributionOut:
        dist, repository, version, remote = _load(session, name)
        current: dict[str, Any] = {
            "name": dist.name, "base_path": dist.base_path, "repository": repository,
            "repository_version": version, "private": dist.private,
            "readers": readers_of(session, dist.id),
            "anonymous_pull_through": dist.anonymous_pull_through,
            "pull_through": dist.pull_through, "remote": remote}
        # Switching kind drops what the other kind has (a remote, or a repository).
        if given.get("pull_through") is False:
            current["remote"] = None
        elif given.get("pull_through") is True:
            current["repository"] = current["repository_version"] = None
        return _assign(session, dist, DistributionIn.model_validate({**current, **given}))
    return respond(await write(request, apply))


async def delete(request: web.Request) -> web.Response:
    name = path_name(request)
    await write(request, lambda s: s.delete(_load(s, name)[0]))
    return no_content()
