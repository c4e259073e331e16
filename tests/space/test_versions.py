"""Deleting versions on both databases (tests/db has the property test on SQLite)."""

from __future__ import annotations

import random

from lazyreg.db import content as q
from lazyreg.db.engine import Database
from tests.db.test_versions import _dead_rows, _history, _numbers


def test_remaining_versions_hold_exactly_what_they_held(db: Database) -> None:
    rng = random.Random(7)
    history = [set(rng.sample(range(40), rng.randint(0, 15))) for _ in range(20)]
    with db.write_session() as s:
        repo = _history(s, history)
        before = {n: q.version_content_ids(s, repo.id, n) for n in _numbers(s, repo)}
        doomed = rng.sample(sorted(before)[:-1], 12)
        q.delete_versions(s, repo, doomed)
        after = {n: q.version_content_ids(s, repo.id, n) for n in _numbers(s, repo)}
        assert after == {n: before[n] for n in sorted(set(before) - set(doomed))}
        assert _dead_rows(s, repo) == 0
