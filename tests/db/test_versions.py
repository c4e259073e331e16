"""Deleting versions: what every remaining version holds never changes; rows only deleted
versions used go; retention keeps the newest N and the pinned ones."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lazyreg.db import content as q
from lazyreg.db.engine import Database
from lazyreg.db.models import (
    Content,
    Distribution,
    Repository,
    RepositoryContent,
    RepositoryVersion,
)


def _history(session: Session, versions: list[set[int]], retain: int | None = None) -> Repository:
    """A repository whose versions 1..n hold `versions` (content ids from a pool)."""
    pool = max((max(v) for v in versions if v), default=0)
    ids = []
    for _ in range(pool + 1):
        row = Content(kind="blob")
        session.add(row)
        session.flush()
        ids.append(row.id)
    repo = Repository(name="r", latest_version=0, retain_versions=retain)
    session.add(repo)
    session.flush()
    session.add(RepositoryVersion(repository_id=repo.id, number=0))
    for held in versions:
        assert q.create_version(session, repo, {ids[i] for i in held}) is not None
    return repo


def _numbers(session: Session, repo: Repository) -> list[int]:
    return list(session.scalars(select(RepositoryVersion.number).where(
        RepositoryVersion.repository_id == repo.id).order_by(RepositoryVersion.number)))


def _dead_rows(session: Session, repo: Repository) -> int:
    """Membership rows whose range holds no remaining version."""
    numbers = _numbers(session, repo)
    rows = session.execute(select(RepositoryContent.version_added,
                                  RepositoryContent.version_removed)
                           .where(RepositoryContent.repository_id == repo.id)).all()
    return sum(1 for added, removed in rows
               if not any(added <= n and (removed is None or n < removed) for n in numbers))


@pytest.mark.parametrize("seed", range(8))
def test_remaining_versions_hold_exactly_what_they_held(db: Database, seed: int) -> None:
    rng = random.Random(seed)
    history = [set(rng.sample(range(30), rng.randint(0, 12))) for _ in range(rng.randint(3, 15))]
    with db.write_session() as s:
        repo = _history(s, history)
        before = {n: q.version_content_ids(s, repo.id, n) for n in _numbers(s, repo)}
        doomed = rng.sample(sorted(before)[:-1], rng.randint(1, len(before) - 1))
        q.delete_versions(s, repo, doomed)
        after = {n: q.version_content_ids(s, repo.id, n) for n in _numbers(s, repo)}
        assert sorted(after) == sorted(set(before) - set(doomed))
        assert after == {n: before[n] for n in after}
        assert _dead_rows(s, repo) == 0


def test_the_latest_version_cannot_be_deleted(db: Database) -> None:
    with db.write_session() as s:
        repo = _history(s, [{1}, {2}])
        with pytest.raises(ValueError, match="latest"):
            q.delete_versions(s, repo, [2])


def test_retain_versions_prunes_at_each_new_version_and_keeps_pinned_ones(db: Database) -> None:
    with db.write_session() as s:
        repo = _history(s, [{1}, {1, 2}, {5}])  # versions 1..3, content ids 0..5
        ids = sorted(s.scalars(select(Content.id)))
        pinned = s.scalar(select(RepositoryVersion.id).where(
            RepositoryVersion.repository_id == repo.id, RepositoryVersion.number == 1))
        s.add(Distribution(name="old", base_path="old", repository_id=repo.id,
                           repository_version_id=pinned))
        s.flush()
        repo.retain_versions = 2
        for held in ({3}, {3, 4}):
            q.create_version(s, repo, {ids[i] for i in held})
        assert _numbers(s, repo) == [1, 4, 5]
        assert q.version_content_ids(s, repo.id, 1) == {ids[1]}
        assert q.version_content_ids(s, repo.id, 5) == {ids[3], ids[4]}
        assert _dead_rows(s, repo) == 0
        assert q.prune_versions(s, repo, 1) == [4]
        assert _numbers(s, repo) == [1, 5]
        assert s.scalar(select(func.count()).select_from(Distribution)) == 1
