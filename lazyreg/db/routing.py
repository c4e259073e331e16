"""Which distribution serves a /v2 name, and the repositories of pull-through distributions.

A name is served by the distribution whose base path is that name exactly;
else by the pull-through distribution whose base path is the longest prefix
of it, in whole path components (the empty base path is a prefix of every
name). The rest of the name is then the upstream repository name, and the
repository holding it is named `<distribution>/<upstream name>`. The same
rule decides what a request may pull and which token scope grants it.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from sqlalchemy import ColumnElement, case, func, literal, select, union_all
from sqlalchemy.orm import Session

from lazyreg.db.models import (
    Distribution,
    PullThroughRepository,
    Remote,
    Repository,
    RepositoryVersion,
)
from lazyreg.oci.names import MAX_NAME_LENGTH
from lazyreg.oci.tagfilter import TagFilter


def prefixes(name: str) -> list[str]:
    """The base paths that could serve `name` by pull-through, longest first."""
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)] + [""]


def upstream_part(base_path: str, name: str) -> str:
    return name[len(base_path) + 1:] if base_path else name


def pull_through_for(session: Session, name: str) -> tuple[Distribution, str] | None:
    """The pull-through distribution with the longest base path that is a prefix of
    `name`, and the upstream name (the rest)."""
    candidates = prefixes(name)
    rows = {d.base_path: d for d in session.scalars(
        select(Distribution).where(Distribution.base_path.in_(candidates),
                                   Distribution.pull_through.is_(True)))}
    for base in candidates:
        if base in rows:
            return rows[base], upstream_part(base, name)
    return None


def serving(session: Session, name: str) -> tuple[Distribution, str | None] | None:
    """The distribution serving `name`, with the upstream name when it is by pull-through."""
    exact = session.scalar(select(Distribution).where(Distribution.base_path == name,
                                                      Distribution.pull_through.is_(False)))
    if exact is not None:
        return exact, None
    return pull_through_for(session, name)


def globs_allow(value: str, include: list[str] | None, exclude: list[str] | None) -> bool:
    """Whether `value` matches an `include` glob (any, when there are none) and no `exclude`."""
    if include and not any(fnmatchcase(value, g) for g in include):
        return False
    return not (exclude and any(fnmatchcase(value, g) for g in exclude))


@dataclass(frozen=True)
class Mirror:
    """A pull-through distribution asked for one upstream repository, with what its
    remote says about it (tuples, so that a Target holding it stays hashable)."""

    distribution_id: int
    distribution: str  # its name: the prefix of the repositories it creates
    upstream_name: str
    remote_id: int | None  # None: the remote was deleted; only stored content is served
    anonymous_fetch: bool  # may anonymous clients make it fetch new content?
    tag_ttl: int = 300
    negative_ttl: int = 30
    name_allowed: bool = True  # by the remote's include_names / exclude_names
    include_tags: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()

    @property
    def repository_name(self) -> str:
        return f"{self.distribution}/{self.upstream_name}"

    def tag_allowed(self, tag: str) -> bool:
        return TagFilter.of(self.include_tags, self.exclude_tags).allows(tag)


@dataclass(frozen=True)
class Target:
    """The repository version a name serves. The repository is named by `uid`, never
    reused (database ids are), so that answers cached under a Target die with it."""

    repository_uid: str  # "" under a pull-through distribution before the first pull
    repository_id: int
    version: int
    private: bool = False  # pulled only with a token for its scope (`registry.access`)
    mirror: Mirror | None = None  # set when a pull-through distribution serves the name


def mirror_of(session: Session, dist: Distribution, upstream_name: str) -> Mirror:
    remote = session.get(Remote, dist.remote_id) if dist.remote_id is not None else None
    if remote is None:
        return Mirror(dist.id, dist.name, upstream_name, None, dist.anonymous_pull_through)
    return Mirror(dist.id, dist.name, upstream_name, remote.id, dist.anonymous_pull_through,
                  tag_ttl=remote.tag_ttl, negative_ttl=remote.negative_ttl,
                  name_allowed=globs_allow(upstream_name, remote.include_names,
                                           remote.exclude_names),
                  include_tags=tuple(remote.include_tags or ()),
                  exclude_tags=tuple(remote.exclude_tags or ()))


def pulled_repository(session: Session, mirror: Mirror) -> Repository | None:
    return session.scalar(
        select(Repository).join(PullThroughRepository,
                                PullThroughRepository.repository_id == Repository.id)
        .where(PullThroughRepository.distribution_id == mirror.distribution_id,
               PullThroughRepository.upstream_name == mirror.upstream_name))


class NameTooLong(ValueError):
    """`<distribution>/<upstream name>` does not fit a repository name."""


def ensure_repository(session: Session, mirror: Mirror) -> Repository:
    """The repository of `mirror`, created (empty version 0, `retain_versions` 1) on first use.

    A repository of that name made beforehand (say, to set another
    `retain_versions`) is adopted. Two processes creating it at once: one
    insert fails with IntegrityError, and the caller's next attempt finds it.
    """
    found = pulled_repository(session, mirror)
    if found is not None:
        return found
    name = mirror.repository_name
    if len(name) > MAX_NAME_LENGTH:
        raise NameTooLong(f"repository name {name[:80]!r}… is longer than {MAX_NAME_LENGTH}"
                          " characters")
    repository = session.scalar(select(Repository).where(Repository.name == name))
    if repository is None:
        repository = Repository(name=name, description=f"pulled through distribution"
                                f" {mirror.distribution!r}", latest_version=0,
                                retain_versions=1)
        session.add(repository)
        session.flush()
        empty = {"tags": 0, "manifests": 0, "blobs": 0}
        session.add(RepositoryVersion(repository_id=repository.id, number=0,
                                      content_counts=dict(empty), added_counts=dict(empty),
                                      removed_counts=dict(empty)))
    session.add(PullThroughRepository(distribution_id=mirror.distribution_id,
                                      upstream_name=mirror.upstream_name,
                                      repository_id=repository.id))
    session.flush()
    return repository


def catalog_names(*where: ColumnElement[bool]) -> ColumnElement[str]:
    """Every name `_catalog` lists: the base paths of plain distributions, and
    `<base path>/<upstream name>` for each repository a pull-through one created.
    `where` are conditions on Distribution (who may see which)."""
    ptr = PullThroughRepository
    pulled = case((Distribution.base_path == "", ptr.upstream_name),
                  else_=Distribution.base_path + literal("/") + ptr.upstream_name)
    names = union_all(
        select(Distribution.base_path.label("name"))
        .where(Distribution.pull_through.is_(False), *where),
        select(pulled.label("name")).select_from(Distribution)
        .join(ptr, ptr.distribution_id == Distribution.id)
        .where(Distribution.pull_through.is_(True), func.length(pulled) <= MAX_NAME_LENGTH,
               *where)).subquery()
    return names.c.name
