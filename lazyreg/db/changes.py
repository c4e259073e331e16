"""The change feed: how every server process on one database keeps its in-memory caches right.

A process that changes what caches hold (a distribution, a repository, a user...)
publishes keys ("targets", "account:<id>"...) in `cache_changes` under the next
generation of `cache_counter`; bumping that one row in the publishing
transaction orders publishers, so generations commit in order and a reader
that sees generation N has every change up to N. Each process polls the
counter every POLL seconds (one indexed one-row read: cheap on SQLite and on
PostgreSQL alike, which is why this is a poll and not PostgreSQL's
LISTEN/NOTIFY: one mechanism for both, and nothing lost across a reconnect),
hands the new keys to its subscribers, and records the generation it has
applied in `cache_nodes` with a heartbeat.

Two bounds follow, for a process whose database answers:

- seen: a change published on one process is applied on every other within
  POLL plus one read (`SEEN_BOUND` states it with a margin);
- deleted: `wait_applied(N)` returns once every process that may still answer
  from memory has applied N. A process may answer from memory only within
  `grace` seconds of its last heartbeat (`serving`); one whose heartbeat is
  older than `grace` + LEEWAY has stopped doing so, and a process of this host
  that is gone is not waited for. So a DELETE that waits is seen everywhere
  when it answers, at the price of waiting up to `grace` + LEEWAY for a
  process that was killed or lost its database meanwhile.

`grace` is also what lets a process keep serving its cached answers through a
database outage: up to `grace` seconds after its last heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from lazyreg.db.engine import Database
from lazyreg.db.models import CacheChange, CacheCounter, CacheNode
from lazyreg.worker import WorkerId

log = logging.getLogger(__name__)

EVERYTHING = "*"  # the key a subscriber gets when it must drop all it holds
# Keys that every management write publishes: what base paths serve (and whether
# privately) may have changed; users, roles or tokens may have.
TARGETS = "targets"
ACCOUNTS = "accounts"
ACCOUNT_PREFIX = "account:"  # + an account id: that account only
MANAGEMENT = (TARGETS, ACCOUNTS)
POLL = 0.2  # seconds between two looks at the counter
HEARTBEAT = 2.0  # seconds between heartbeats when nothing changes
SEEN_BOUND = 1.0  # stated bound: a change is applied everywhere within this (POLL + margin)
LEEWAY = 1.0  # seconds the clocks of two hosts may disagree
KEEP = 1000  # changes kept; a process further behind drops everything
MAX_KEYS = 1000  # keys read per poll
WAIT_POLL = 0.05  # seconds between looks at the other processes while waiting
SILENT = 3600.0  # seconds after which a process's row is dropped (at another's start)


# ------------------------------------------------------------------ queries


def publish(session: Session, keys: list[str]) -> int:
    """Record `keys` under the next generation (in the caller's transaction); that generation."""
    session.execute(update(CacheCounter).where(CacheCounter.id == 1)
                    .values(generation=CacheCounter.generation + 1))
    generation = int(session.scalar(select(CacheCounter.generation)
                                    .where(CacheCounter.id == 1)) or 0)
    for key in sorted(set(keys)):
        session.add(CacheChange(generation=generation, key=key[:255]))
    session.execute(delete(CacheChange).where(CacheChange.generation <= generation - KEEP))
    return generation


def latest(session: Session) -> int:
    return int(session.scalar(select(CacheCounter.generation).where(CacheCounter.id == 1)) or 0)


def since(session: Session, seen: int, upto: int) -> list[tuple[int, str]]:
    rows = session.execute(select(CacheChange.generation, CacheChange.key)
                           .where(CacheChange.generation > seen,
                                  CacheChange.generation <= upto)
                           .order_by(CacheChange.generation).limit(MAX_KEYS))
    return [(int(g), k) for g, k in rows]


def heartbeat(session: Session, worker: str, seen: int, now: float) -> None:
    row = session.get(CacheNode, worker)
    if row is None:
        session.add(CacheNode(worker=worker, seen=seen, heartbeat=now))
    else:
        row.seen, row.heartbeat = seen, now


def behind(session: Session, generation: int, me: str) -> list[tuple[str, float]]:
    """(worker, heartbeat) of the other processes that have not applied `generation`."""
    rows = session.execute(select(CacheNode.worker, CacheNode.heartbeat)
                           .where(CacheNode.seen < generation, CacheNode.worker != me))
    return [(w, float(h)) for w, h in rows]


def leave(session: Session, worker: str) -> None:
    session.execute(delete(CacheNode).where(CacheNode.worker == worker))


def forget_silent(session: Session, before: float) -> None:
    """Drop the rows of processes silent since `before` (killed ones never leave)."""
    session.execute(delete(CacheNode).where(CacheNode.heartbeat < before))


# ------------------------------------------------------------------ the process's follower


class ChangeFeed:
    """This process's view of the feed: polls it, applies it, waits for the others."""

    def __init__(self, db: Database, worker: WorkerId, grace: float = 40.0,
                 poll: float = POLL, clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.worker = str(worker)
        self.grace = grace
        self.poll = poll
        self._clock = clock
        self._subscribers: list[Callable[[str], None]] = []
        self.seen = 0
        # When the last poll that ended in a heartbeat started (clock()); None: never.
        self._confirmed: float | None = None
        self._last_beat = float("-inf")
        self.reachable = True  # whether the last look at the database worked
        self._task: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._mine: set[int] = set()  # generations published and applied here, not yet seen
        self._lock = asyncio.Lock()

    def subscribe(self, apply: Callable[[str], None]) -> None:
        """`apply(key)` for every key published (EVERYTHING: drop all)."""
        self._subscribers.append(apply)

    @property
    def serving(self) -> bool:
        """Whether answers kept in memory may be used: this process heard from the database
        (and told the others what it applied) within `grace` seconds."""
        return self._confirmed is not None and self._clock() - self._confirmed <= self.grace

    def _apply(self, keys: list[str]) -> None:
        for key in keys:
            for apply in self._subscribers:
                try:
                    apply(key)
                except Exception:  # one subscriber's bug must not stop the others
                    log.exception("cache change %r: a subscriber failed", key)

    def apply(self, *keys: str, generation: int | None = None) -> None:
        """Apply `keys` here, after the change committed (a lookup that read before cannot
        keep its answer); `generation`, when it was published, is then not applied again
        when the poll sees it (that would drop answers read since, which a database
        outage right after would need)."""
        self._apply(list(keys))
        if generation is not None and generation > self.seen:
            self._mine.add(generation)

    async def publish(self, *keys: str) -> int:
        """Publish `keys` in a transaction of their own, then apply them here; the
        generation, for `wait_applied`. A change made in a transaction should rather
        call the module's `publish(session, keys)` in it: one commit, nothing lost."""
        async with self._lock:  # the poll does not see it before it is known as ours
            generation = await self.db.write(lambda s: publish(s, list(keys)))
            self.apply(*keys, generation=generation)
        return generation

    def announce(self, *keys: str) -> None:
        """`publish` from code that cannot wait (a task's end), in the background (a
        failure is logged; the cache's own `ttl` still bounds what others serve)."""
        async def send() -> None:
            try:
                await self.publish(*keys)
            except Exception as exc:
                self._apply(list(keys))
                log.warning("cache coherence: could not publish %s: %s", keys, exc)
        task = asyncio.create_task(send())
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def look(self) -> None:
        """One poll: apply what was published since the last, and say so (heartbeat)."""
        async with self._lock:
            await self._look()

    async def _look(self) -> None:
        started = self._clock()
        seen = self.seen

        def read(session: Session) -> tuple[int, list[tuple[int, str]]]:
            top = latest(session)
            return top, (since(session, seen, top) if top > seen else [])
        top, changes = await self.db.read(read)
        keys = list(dict.fromkeys(k for g, k in changes if g not in self._mine))
        if top > seen and (not changes or changes[0][0] > seen + 1
                           or len(changes) == MAX_KEYS):
            keys = [EVERYTHING]  # pruned past us, or too much at once: drop everything
        applied = top
        self._mine = {g for g in self._mine if g > applied}
        if keys:
            self._apply(keys)
        now = time.time()
        if applied != self.seen or now - self._last_beat >= HEARTBEAT or not self.serving:
            await self.db.write(lambda s: heartbeat(s, self.worker, applied, now))
            self._last_beat = now
            self._confirmed = started
        self.seen = applied

    async def start(self) -> None:
        """The first look (so that this process counts from now on), then a poll loop."""
        self.seen = await self.db.read(latest)
        silent = time.time() - SILENT
        await self.db.write(lambda s: forget_silent(s, silent))
        await self.look()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.poll)
            try:
                await self.look()
                if not self.reachable:
                    log.info("cache coherence: the database answers again")
                self.reachable = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.reachable:
                    log.warning("cache coherence: cannot read the change feed (%s); cached"
                                " answers are served for up to %g s after the last look",
                                exc, self.grace)
                self.reachable = False

    async def wait_applied(self, generation: int) -> list[str]:
        """Until every process that may still answer from memory has applied `generation`
        (at most `grace` + LEEWAY + HEARTBEAT seconds); the processes waited for in vain."""
        deadline = time.monotonic() + self.grace + LEEWAY + HEARTBEAT
        while True:
            lagging = await self.db.read(lambda s: behind(s, generation, self.worker))
            now = time.time()
            waiting = [w for w, beat in lagging
                       if now - beat <= self.grace + LEEWAY and not _gone(w)]
            if not waiting or time.monotonic() >= deadline:
                return waiting
            await asyncio.sleep(WAIT_POLL)

    async def close(self) -> None:
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.db.write(lambda s: leave(s, self.worker))


def _gone(worker: str) -> bool:
    parsed = WorkerId.parse(worker)
    return parsed is not None and parsed.known_dead()
