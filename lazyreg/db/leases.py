"""Leases: which server process does a job (downloading one blob), coordinated through the database.

A lease row names its owner (a `WorkerId`), a state and an expiry, and where
the owner's peers can reach it (its `cluster_url`, when it is in a cluster:
followers on other nodes read a download's landed bytes there). The owner of
a `running` lease keeps renewing it; when the job ends it marks it `done` (the
bytes were verified, which followers need to know even when nothing is stored)
or `failed`. Any process may take a lease that is finished, expired, or owned
by a process of this host that is dead. Rows that finished or expired long ago
are purged as leases finish, so the table holds about what is in flight.

Each function is one short step of a write (or read) transaction; callers run
them through `Database.write`/`read`. `claim_many` and `finish_many` do for a
batch of keys what `claim` and `finish` do for one, in a few statements.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.orm import Session

from lazyreg.db.content import chunked
from lazyreg.db.models import Lease
from lazyreg.worker import WorkerId

FORGET_AFTER = 3600.0  # seconds past expiry after which any lease row is purged


def blob_lease(digest: str) -> str:
    """The lease of a blob: its download takes it, and so does deleting it."""
    return f"blob:{digest}"


class LeaseState(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    NOT_FOUND = "not_found"  # failed because what it was for does not exist (an upstream 404)


@dataclass(frozen=True)
class LeaseView:
    owner: WorkerId | None  # None: the row names no worker this code can parse
    state: LeaseState
    expires: float
    url: str | None = None  # the owner's cluster_url (None: not in a cluster)

    def takeable(self, now: float) -> bool:
        """May another process claim it now?"""
        return (self.state is not LeaseState.RUNNING or self.expires < now
                or self.owner is None or self.owner.known_dead())


def _view(row: Lease) -> LeaseView:
    try:
        state = LeaseState(row.state)
    except ValueError:
        state = LeaseState.FAILED
    return LeaseView(WorkerId.parse(row.owner), state, row.expires, row.url)


def claim(session: Session, key: str, me: WorkerId, ttl: float,
          url: str | None = None, answers: frozenset[LeaseState] = frozenset()
          ) -> LeaseView | None:
    """Take the lease (None) or return the live lease of another process.

    `url`: where peers reach this process (its cluster_url), recorded with the lease.
    `answers`: ended states that, until the lease expires, are the answer for everyone
    (a 404 upstream), returned rather than taken over: read on the locked row, so
    that a lease ending between a look and a claim is never claimed again.
    """
    now = time.time()
    row = session.get(Lease, key, with_for_update=True, populate_existing=True)
    if row is None:
        session.add(Lease(key=key, owner=str(me), expires=now + ttl,
                          state=LeaseState.RUNNING.value, url=url))
        return None
    current = _view(row)
    if current.state in answers and current.expires > now:
        return current
    if current.owner != me and not current.takeable(now):
        return current
    row.owner, row.expires, row.state = str(me), now + ttl, LeaseState.RUNNING.value
    row.url = url
    return None


def claim_many(session: Session, keys: Sequence[str], me: WorkerId,
               ttl: float, url: str | None = None) -> dict[str, LeaseView]:
    """`claim` for each key: the live leases of other processes; every other key is ours."""
    now = time.time()
    rows: dict[str, Lease] = {}
    for batch in chunked(sorted(set(keys))):
        rows.update((row.key, row) for row in session.scalars(
            select(Lease).where(Lease.key.in_(batch)).with_for_update()))
    held: dict[str, LeaseView] = {}
    for key, row in rows.items():
        current = _view(row)
        if current.owner != me and not current.takeable(now):
            held[key] = current
        else:
            row.owner, row.expires, row.state = str(me), now + ttl, LeaseState.RUNNING.value
            row.url = url
    new = sorted(set(keys) - set(rows))
    for batch in chunked(new, 150):  # 5 parameters a row
        session.execute(insert(Lease), [{"key": k, "owner": str(me), "expires": now + ttl,
                                         "state": LeaseState.RUNNING.value, "url": url}
                                        for k in batch])
    return held


def renew(session: Session, key: str, me: WorkerId, ttl: float) -> bool:
    row = session.get(Lease, key, with_for_update=True)
    if row is None or row.owner != str(me) or row.state != LeaseState.RUNNING:
        return False
    row.expires = time.time() + ttl
    return True


def finish(session: Session, key: str, me: WorkerId, ttl: float, verified: bool) -> None:
    """End this process's lease: `done` or `failed`, kept `ttl` seconds for followers."""
    end(session, key, me, ttl, LeaseState.DONE if verified else LeaseState.FAILED)


def end(session: Session, key: str, me: WorkerId, ttl: float, state: LeaseState) -> None:
    """End this process's lease in `state`, kept `ttl` seconds for followers."""
    now = time.time()
    row = session.get(Lease, key, with_for_update=True)
    if row is not None and row.owner == str(me):
        row.state = state.value
        row.expires = now + ttl
    _purge(session, now)


def finish_many(session: Session, outcomes: Mapping[str, bool], me: WorkerId,
                ttl: float) -> None:
    """`finish` for each key of `outcomes` (key -> verified)."""
    now = time.time()
    for verified in (True, False):
        state = (LeaseState.DONE if verified else LeaseState.FAILED).value
        keys = sorted(k for k, v in outcomes.items() if v is verified)
        for batch in chunked(keys):
            session.execute(update(Lease).where(Lease.key.in_(batch), Lease.owner == str(me))
                            .values(state=state, expires=now + ttl))
    _purge(session, now)


def _purge(session: Session, now: float) -> None:
    session.execute(delete(Lease).where(or_(
        and_(Lease.state != LeaseState.RUNNING.value, Lease.expires < now),
        Lease.expires < now - FORGET_AFTER)))


def release(session: Session, key: str, me: WorkerId) -> None:
    """Give this process's running lease up unfinished: any process may take it at once."""
    session.execute(delete(Lease).where(Lease.key == key, Lease.owner == str(me),
                                        Lease.state == LeaseState.RUNNING.value))


def held_by_others(session: Session, keys: list[str], me: WorkerId) -> set[str]:
    """Those of `keys` whose lease another live process holds now."""
    now, held = time.time(), set()
    for batch in chunked(keys):
        for row in session.scalars(select(Lease).where(Lease.key.in_(batch))):
            view = _view(row)
            if view.owner != me and not view.takeable(now):
                held.add(row.key)
    return held


def get(session: Session, key: str) -> LeaseView | None:
    row = session.get(Lease, key)
    return _view(row) if row is not None else None


def release_many(session: Session, keys: Sequence[str], me: WorkerId) -> None:
    """`release` for each key."""
    for batch in chunked(sorted(keys)):
        session.execute(delete(Lease).where(Lease.key.in_(batch), Lease.owner == str(me),
                                            Lease.state == LeaseState.RUNNING.value))


def release_all(session: Session, me: WorkerId) -> None:
    """Drop this process's running leases (at shutdown): followers take over at once."""
    session.execute(delete(Lease).where(Lease.owner == str(me),
                                        Lease.state == LeaseState.RUNNING.value))


def liveness(session: Session, keys: Sequence[str]) -> dict[str, bool]:
    """For each of `keys` that has a lease: whether a live process (this one included)
    holds it, running (False: finished, expired, or its owner is dead)."""
    now, found = time.time(), {}
    for batch in chunked(sorted(set(keys))):
        for row in session.scalars(select(Lease).where(Lease.key.in_(batch))):
            found[row.key] = not _view(row).takeable(now)
    return found
