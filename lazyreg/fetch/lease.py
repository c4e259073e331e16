"""Leases: which server process downloads a blob, coordinated through the database.

A lease row `blob:<digest>` names its owner and an expiry that the owner keeps
renewing. Another process that finds a live lease follows the owner's staging
file instead of downloading; one that finds an expired lease (or one whose
owner on this host is dead) takes it over. When the download is verified the
owner marks the row `done:<owner>`, so followers know the bytes are good even
when the blob is relayed and not stored (`streamed`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from lazyreg.db.models import Lease

DONE = "done:"


@dataclass(frozen=True)
class Holder:
    owner: str
    expires: float

    @property
    def done(self) -> bool:
        return self.owner.startswith(DONE)


def _dead_on_this_host(owner: str, me: str) -> bool:
    host, _, pid = owner.rpartition("-")
    my_host = me.rpartition("-")[0]
    return host == my_host and pid.isdigit() and not Path(f"/proc/{pid}").exists()


def claim(session: Session, key: str, me: str, ttl: float) -> Holder | None:
    """Take the lease (None) or return who holds it."""
    now = time.time()
    row = session.get(Lease, key, with_for_update=True)
    if row is None:
        session.add(Lease(key=key, owner=me, expires=now + ttl))
        return None
    if row.owner.startswith(DONE) or row.expires < now or _dead_on_this_host(row.owner, me):
        row.owner, row.expires = me, now + ttl
        return None
    return Holder(row.owner, row.expires)


def renew(session: Session, key: str, me: str, ttl: float) -> bool:
    row = session.get(Lease, key, with_for_update=True)
    if row is None or row.owner != me:
        return False
    row.expires = time.time() + ttl
    return True


def finish(session: Session, key: str, me: str, ttl: float, ok: bool) -> None:
    row = session.get(Lease, key, with_for_update=True)
    if row is None or row.owner != me:
        return
    if ok:
        row.owner, row.expires = DONE + me, time.time() + ttl
    else:
        session.delete(row)


def holder(session: Session, key: str) -> Holder | None:
    row = session.scalar(select(Lease).where(Lease.key == key))
    return Holder(row.owner, row.expires) if row else None


def release_all(session: Session, me: str) -> None:
    """Drop this process's leases (at shutdown): followers fail over at once."""
    session.execute(delete(Lease).where(Lease.owner == me))
