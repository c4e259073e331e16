"""Leases: one owner at a time; finished, expired and dead owners' leases can be taken."""

from __future__ import annotations

import subprocess
import time

from sqlalchemy import func, select, text, update

from lazyreg.db import leases
from lazyreg.db.engine import Database
from lazyreg.db.leases import LeaseState
from lazyreg.db.models import Lease
from lazyreg.worker import WorkerId

A, B = WorkerId("host-a", 1), WorkerId("host-b", 2)
KEY = "blob:sha256:" + "a" * 64


def test_one_owner_at_a_time_until_it_finishes(db: Database) -> None:
    with db.write_session() as s:
        assert leases.claim(s, KEY, A, 30) is None
    with db.write_session() as s:
        held = leases.claim(s, KEY, B, 30)
    assert held is not None and held.owner == A and held.state is LeaseState.RUNNING
    with db.write_session() as s:
        assert leases.renew(s, KEY, A, 30)
        assert not leases.renew(s, KEY, B, 30)
        leases.finish(s, KEY, A, 30, verified=True)
    with db.read_session() as s:
        view = leases.get(s, KEY)
    assert view is not None and view.state is LeaseState.DONE and view.owner == A
    with db.write_session() as s:
        assert leases.claim(s, KEY, B, 30) is None  # a finished lease is free
        assert not leases.renew(s, KEY, A, 30)


def test_an_expired_lease_or_a_dead_owner_is_taken_over(db: Database) -> None:
    with db.write_session() as s:
        leases.claim(s, KEY, A, 30)
        s.execute(update(Lease).values(expires=time.time() - 1))
    with db.write_session() as s:
        assert leases.claim(s, KEY, B, 30) is None

    proc = subprocess.Popen(["true"])
    proc.wait()
    dead = WorkerId(WorkerId.current().host, proc.pid)
    with db.write_session() as s:
        leases.release(s, KEY, B)
        assert leases.claim(s, KEY, dead, 3600) is None
    with db.write_session() as s:
        assert leases.claim(s, KEY, A, 30) is None  # its owner is dead, long expiry or not


def test_release_frees_a_lease_and_failure_is_recorded(db: Database) -> None:
    with db.write_session() as s:
        leases.claim(s, KEY, A, 30)
        leases.claim(s, KEY + "2", A, 30)
        leases.release_all(s, A)
    with db.read_session() as s:
        assert leases.get(s, KEY) is None
    with db.write_session() as s:
        leases.claim(s, KEY, B, 30)
        leases.finish(s, KEY, B, 30, verified=False)
    with db.read_session() as s:
        view = leases.get(s, KEY)
    assert view is not None and view.state is LeaseState.FAILED
    assert view.takeable(time.time())


def test_finished_leases_are_purged_once_expired(db: Database) -> None:
    with db.write_session() as s:
        for i in range(5):
            leases.claim(s, f"{KEY}{i}", A, 30)
            leases.finish(s, f"{KEY}{i}", A, -1, verified=True)  # expired at once
        leases.claim(s, KEY, B, 30)  # running: kept
        leases.finish(s, KEY + "x", B, 30, verified=True)  # no such lease: nothing to mark
    with db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(Lease)) == 1


def test_a_batch_claims_what_is_free_and_names_what_others_hold(db: Database) -> None:
    keys = [f"{KEY}{i}" for i in range(1000)]  # more than one chunk of parameters
    with db.write_session() as s:
        leases.claim(s, keys[0], B, 30)  # held by a live process
        leases.claim(s, keys[1], B, 30)
        leases.finish(s, keys[1], B, 30, verified=True)  # finished: free
        leases.claim(s, keys[2], A, 30)  # already ours
    with db.write_session() as s:
        held = leases.claim_many(s, keys, A, 30)
    assert set(held) == {keys[0]} and held[keys[0]].owner == B
    with db.read_session() as s:
        views = {k: leases.get(s, k) for k in keys[1:]}
    assert all(v is not None and v.owner == A and v.state is LeaseState.RUNNING
               for v in views.values())
    with db.write_session() as s:
        assert set(leases.claim_many(s, keys[:5], B, 30)) == set(keys[1:5])


def test_a_batch_finishes_or_releases_only_its_own_leases(db: Database) -> None:
    keys = [f"{KEY}{i}" for i in range(4)]
    with db.write_session() as s:
        leases.claim_many(s, keys[:3], A, 30)
        leases.claim(s, keys[3], B, 30)
        leases.finish_many(s, {keys[0]: True, keys[1]: False, keys[3]: True}, A, 30)
        leases.release_many(s, [keys[2], keys[3]], A)
    with db.read_session() as s:
        views = [leases.get(s, k) for k in keys]
    assert views[0] is not None and views[0].state is LeaseState.DONE
    assert views[1] is not None and views[1].state is LeaseState.FAILED
    assert views[2] is None  # released: free at once
    assert views[3] is not None and views[3].owner == B and views[3].state is LeaseState.RUNNING


def test_a_lease_says_where_its_owner_is_reached_and_a_taker_replaces_it(db: Database) -> None:
    other = "blob:sha256:" + "b" * 64
    with db.write_session() as s:
        assert leases.claim(s, KEY, A, 30, "http://10.0.0.1:5001") is None
        assert leases.claim_many(s, [other], A, 30, "http://10.0.0.1:5001") == {}
    with db.write_session() as s:
        held = leases.claim(s, KEY, B, 30, "http://10.0.0.2:5001")
        assert held is not None and held.url == "http://10.0.0.1:5001"
        assert leases.claim_many(s, [other], B, 30)[other].url == "http://10.0.0.1:5001"
        leases.end(s, KEY, A, 30, LeaseState.NOT_FOUND)
    with db.write_session() as s:
        assert leases.claim(s, KEY, B, 30, "http://10.0.0.2:5001") is None
    with db.read_session() as s:
        view = leases.get(s, KEY)
    assert view is not None and (view.owner, view.url) == (B, "http://10.0.0.2:5001")
def test_liveness_says_which_leases_live_owners_run(db: Database) -> None:
    """What the staging sweep keeps: a download a live process runs (this one's too)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    dead = WorkerId(WorkerId.current().host, proc.pid)
    keys = {name: f"blob:sha256:{name * 64}" for name in "abcde"}
    with db.write_session() as s:
        leases.claim(s, keys["a"], WorkerId.current(), 30)  # this process, running
        leases.claim(s, keys["b"], B, 30)  # another host's, running: alive until it expires
        leases.claim(s, keys["c"], dead, 3600)  # a dead process of this host
        leases.claim(s, keys["d"], A, 30)
        leases.finish(s, keys["d"], A, 30, verified=True)  # over
        leases.claim(s, keys["e"], B, 30)
        s.execute(update(Lease).where(Lease.key == keys["e"]).values(expires=time.time() - 1))
    with db.read_session() as s:
        answer = leases.liveness(s, [*keys.values(), "blob:sha256:" + "f" * 64])
    assert answer == {keys["a"]: True, keys["b"]: True, keys["c"]: False,
                      keys["d"]: False, keys["e"]: False}  # no row: not in the answer


def test_an_ended_lease_that_answers_is_returned_not_taken_until_it_expires(
        db: Database) -> None:
    """A pull-through 404 answers every process for its lease's life: the claim reads it on
    the locked row, so a lease that ended between a look and a claim is not fetched again."""
    answers = frozenset({LeaseState.NOT_FOUND, LeaseState.FAILED})
    with db.write_session() as s:
        assert leases.claim(s, KEY, A, 30) is None
    with db.write_session() as s:
        looked = leases.get(s, KEY)  # B looks: A's download runs
        assert looked is not None and looked.state is LeaseState.RUNNING
        # meanwhile A ends it with a 404 (a statement the session's objects do not see)
        s.connection().execute(text("UPDATE leases SET state = 'not_found'"))
        held = leases.claim(s, KEY, B, 30, answers=answers)
    assert held is not None and held.state is LeaseState.NOT_FOUND and held.owner == A
    with db.write_session() as s:
        s.execute(update(Lease).values(expires=time.time() - 1))
    with db.write_session() as s:
        assert leases.claim(s, KEY, B, 30, answers=answers) is None  # expired: B's now
