"""Finding resources by name inside a transaction, and refusing duplicates."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from lazyreg.db.models import Distribution, Remote, Repository, RepositoryVersion
from lazyreg.errors import ApiError, Conflict, NotFound

N = TypeVar("N", Remote, Repository, Distribution)
KIND: dict[type, str] = {Remote: "remote", Repository: "repository",
                         Distribution: "distribution"}


def by_name(session: Session, model: type[N], name: str) -> N:
    found = session.scalar(select(model).where(model.name == name))
    if found is None:
        raise NotFound(KIND[model], name)
    return found


def referenced(session: Session, model: type[N], name: str, field: str) -> N:
    """A resource named in a request body: unknown is the client's error (400), not a 404."""
    found = session.scalar(select(model).where(model.name == name))
    if found is None:
        raise ApiError(f"{KIND[model]} {name!r} not found", field=field)
    return found


def ensure_unique(session: Session, model: type[N], name: str,
                  current_id: int | None = None) -> None:
    other = session.scalar(select(model.id).where(model.name == name))
    if other is not None and other != current_id:
        raise Conflict(f"{KIND[model]} {name!r} already exists", field="name")


def version_row(session: Session, repository: Repository, number: int) -> RepositoryVersion:
    found = session.scalar(select(RepositoryVersion).where(
        RepositoryVersion.repository_id == repository.id, RepositoryVersion.number == number))
    if found is None:
        raise NotFound("repository version", f"{repository.name}/{number}")
    return found
