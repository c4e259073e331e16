"""Which distribution serves a /v2 name: the exact base path, else the pull-through
distribution with the longest base-path prefix in whole components."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from lazyreg.db.engine import Database
from lazyreg.db.models import Distribution, PullThroughRepository, Remote, Repository
from lazyreg.db.routing import catalog_names, prefixes, serving


def test_prefixes_are_whole_components_longest_first() -> None:
    assert prefixes("a/b/c") == ["a/b", "a", ""]
    assert prefixes("alpine") == [""]


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    database.migrate()

    def fill(session: Session) -> None:
        remote = Remote(name="up", url="https://r.example.test", upstream_name="")
        repo = Repository(name="plain", latest_version=0)
        session.add_all([remote, repo])
        session.flush()
        for name, base in (("root", ""), ("hub", "hub"), ("deep", "hub/library/x")):
            session.add(Distribution(name=name, base_path=base, pull_through=True,
                                     remote_id=remote.id))
        session.add(Distribution(name="plain", base_path="hub/library/alpine",
                                 repository_id=repo.id))
        session.add(Distribution(name="plain2", base_path="team", repository_id=repo.id))
    with database.write_session() as session:
        fill(session)
    return database


@pytest.mark.parametrize(("name", "expected"), [
    ("hub/library/alpine", ("plain", None)),  # an exact base path wins
    ("hub/library/busybox", ("hub", "library/busybox")),
    ("hub/library/x/y", ("deep", "y")),
    ("hub/library/xy", ("hub", "library/xy")),  # whole components only
    ("hub", ("root", "hub")),  # a pull-through base path itself names no upstream repository
    ("library/alpine", ("root", "library/alpine")),
    ("team", ("plain2", None)),
    ("team/x", ("root", "team/x")),  # a plain distribution is no prefix
])
def test_serving(db: Database, name: str, expected: tuple[str, str | None]) -> None:
    with db.read_session() as session:
        found = serving(session, name)
        assert found is not None
        assert (found[0].name, found[1]) == expected


def test_catalog_lists_plain_base_paths_and_pulled_repositories(db: Database) -> None:
    with db.write_session() as session:
        dists = {d.name: d for d in session.scalars(select(Distribution))}
        dists["deep"].private = True
        for dist, upstream in (("root", "library/busybox"), ("hub", "library/redis"),
                               ("deep", "secret")):
            repo = Repository(name=f"{dist}/{upstream}", latest_version=0)
            session.add(repo)
            session.flush()
            session.add(PullThroughRepository(distribution_id=dists[dist].id,
                                              upstream_name=upstream, repository_id=repo.id))
    with db.read_session() as session:
        names = catalog_names()
        assert sorted(session.scalars(select(names))) == [
            "hub/library/alpine", "hub/library/redis", "hub/library/x/secret",
            "library/busybox", "team"]
        public = catalog_names(Distribution.private.is_(False))
        assert "hub/library/x/secret" not in set(session.scalars(select(public)))
