"""Pull-through: what a request for a manifest under a pull-through distribution gets.

`PullThrough.resolve(target, reference)` answers the Target (repository
version) that holds the reference, fetching it from the upstream when needed:

1. a name outside the remote's `include_names`/`exclude_names` is NAME_UNKNOWN,
   a tag outside `include_tags`/`exclude_tags` MANIFEST_UNKNOWN: no upstream request;
2. a tag confirmed upstream within the remote's `tag_ttl`, or a digest the
   repository holds (a digest never needs re-checking), is served as stored:
   from memory (for `tag_ttl` seconds), else after one database read; a tag
   the repository holds but that no pull-through confirmed (a sync put it
   there) is re-checked;
3. a reference that failed recently is answered from memory, without the
   upstream: a 404 for `negative_ttl` seconds, any other failure for at most
   FAILURE_MEMORY seconds;
4. anything else is one flight per (distribution, upstream name, reference):
   one task in this process that every request joins, and one lease in the
   database across processes and servers (a process that finds another's lease
   waits for it and then reads what it wrote). A flight that failed leaves its
   lease saying so for BURST_MEMORY seconds (a 404: `not_found`, for the
   remote's `negative_ttl`): the processes that followed it, or that come
   after, fail alike, a 404 as a 404, rather than ask the upstream again: one
   upstream request per burst, cluster-wide. Each process also remembers it in
   memory (below), which a change of the distribution or remote clears at once. The
   flight HEADs a tag the repository holds
   and GETs only when its digest changed; a reference never seen is fetched
   with its closure and configs (`lazyreg.sync.one_tag`).

When the upstream is down, answers 5xx or 429, sends something unusable, or is
slower than STALE_WAIT, a tag already stored is served stale (a warning in the
log, and `lazyreg_stale_serves_total{kind="manifest"}`); content never seen
gets 503 (502 for an upstream that refused our credentials or sent something
unusable, 429 passed on as TOOMANYREQUESTS). An upstream 404 is
MANIFEST_UNKNOWN; a tag the repository held then leaves it (a new version
without it). A client waits at most the `pull_through_wait` setting for
content never seen; the flight goes on without it (at most MAX_FLIGHT
seconds), so a retry finds the result.

Bounds: MAX_FLIGHTS flights at once, MAX_REMEMBERED remembered failures and
MAX_FRESH confirmed tags in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lazyreg.db import content as q
from lazyreg.db import leases, routing
from lazyreg.db.models import Manifest, PullThroughTag, Remote, Repository
from lazyreg.db.routing import Mirror, Target
from lazyreg.errors import RegistryError
from lazyreg.fetch import Fetcher
from lazyreg.oci.manifest import InvalidManifest
from lazyreg.oci.names import MAX_NAME_LENGTH
from lazyreg.pullthrough.memory import Expiring
from lazyreg.services import Services
from lazyreg.sync.closure import ClosureError, TooManyManifests
from lazyreg.sync.one_tag import Extra, Wanted, drop_tag, fetch_one, held_digest
from lazyreg.upstream.errors import (
    AuthError,
    NotFound,
    TooManyRequests,
    Unavailable,
    UpstreamError,
)

log = logging.getLogger(__name__)

MAX_FLIGHTS = 256  # fetches in progress at once, in this process
MAX_FLIGHT = 300.0  # seconds a flight may take in all (a detached fetch ends by then)
MAX_REMEMBERED = 10_000  # failed references remembered
MAX_FRESH = 65_536  # confirmed tags remembered
FAILURE_MEMORY = 5.0  # seconds an upstream failure (not a 404) is remembered, at most
STALE_WAIT = 2.0  # seconds a request for a stored tag waits for its re-check
FOLLOW_POLL = 0.05  # seconds between looks at another process's lease
BURST_MEMORY = 2.0  # seconds a failed flight's lease answers for it, cluster-wide
# Ended leases that answer every process until they expire (see BURST_MEMORY).
FAILURE_STATES = frozenset({leases.LeaseState.NOT_FOUND, leases.LeaseState.FAILED})

FlightKey = tuple[int, str, str]  # (distribution id, upstream name, reference)
# What a flight may end with that is the upstream's doing (TimeoutError: MAX_FLIGHT).
FAILURES = (UpstreamError, InvalidManifest, ClosureError, TooManyManifests, TimeoutError)


class FetchRefused(Exception):
    """An anonymous client asked for content the distribution may fetch only for users."""


@dataclass(frozen=True)
class Local:
    """What the database holds for one reference of a pulled-through name."""

    target: Target | None  # None: no repository yet
    held: bool  # the latest version holds the reference
    is_tag: bool = True
    checked: float | None = None  # a tag: when it was last confirmed upstream (Unix time)

    def fresh(self, mirror: Mirror, now: float) -> bool:
        """Servable without asking the upstream: a digest held, a tag confirmed lately."""
        if not self.held or not self.is_tag:
            return self.held
        return self.checked is not None and self.checked + mirror.tag_ttl > now


def _is_tag(reference: str) -> bool:
    return ":" not in reference


def _local(session: Session, mirror: Mirror, reference: str, private: bool) -> Local:
    repository = routing.pulled_repository(session, mirror)
    if repository is None:
        return Local(None, False)
    target = Target(repository.uid, repository.id, repository.latest_version, private, mirror)
    if not _is_tag(reference):
        held = session.scalar(select(exists().where(
            Manifest.digest == reference,
            Manifest.id.in_(q.in_version(repository.id, repository.latest_version)))))
        return Local(target, bool(held), is_tag=False)
    held_tag = held_digest(session, repository.id, repository.latest_version, reference)
    checked = session.scalar(select(PullThroughTag.checked).where(
        PullThroughTag.repository_id == repository.id, PullThroughTag.name == reference))
    return Local(target, held_tag is not None, True, checked if held_tag is not None else None)


def _mark_checked(tag: str, when: float) -> Extra:
    def mark(session: Session, repository: Repository) -> None:
        row = session.get(PullThroughTag, (repository.id, tag))
        if row is None:
            session.add(PullThroughTag(repository_id=repository.id, name=tag, checked=when))
        else:
            row.checked = when
    return mark


def _lease_key(mirror: Mirror, reference: str) -> str:
    # Names and tags together can pass the key column's 255 characters: hashed.
    raw = f"{mirror.distribution_id}\0{mirror.upstream_name}\0{reference}".encode()
    return "pull:" + hashlib.sha256(raw).hexdigest()


def _as_registry_error(exc: BaseException, mirror: Mirror, reference: str) -> RegistryError:
    what = f"{mirror.upstream_name}:{reference}" if _is_tag(reference) \
        else f"{mirror.upstream_name}@{reference}"
    if isinstance(exc, NotFound):
        return RegistryError("MANIFEST_UNKNOWN", f"manifest unknown upstream: {what}",
                             detail={"name": mirror.upstream_name, "reference": reference})
    if isinstance(exc, TooManyRequests):
        return RegistryError("TOOMANYREQUESTS", f"the upstream limits our requests for {what}:"
                             f" {exc}; retry later")
    if isinstance(exc, (Unavailable, TimeoutError)):
        return RegistryError("UNAVAILABLE", f"the upstream is unavailable for {what}: {exc}")
    if isinstance(exc, AuthError):
        return RegistryError("UNAVAILABLE", f"the upstream refused our credentials for {what}:"
                             f" {exc}", status=502)
    return RegistryError("UNAVAILABLE", f"the upstream sent an unusable answer for {what}:"
                         f" {exc}", status=502)


class PullThrough:
    """The flights and memories of this process; the application owns one."""

    def __init__(self, services: Services, fetcher: Fetcher,
                 on_stale: Callable[[str], None] = lambda kind: None) -> None:
        self.services = services
        self.fetcher = fetcher
        self._on_stale = on_stale  # counts stale serves (lazyreg_stale_serves_total)
        self._flights: dict[FlightKey, tuple[float, asyncio.Task[Target]]] = {}
        self._failures: Expiring[BaseException] = Expiring(MAX_REMEMBERED)
        self._fresh: Expiring[bool] = Expiring(MAX_FRESH)

    async def close(self) -> None:
        tasks = [task for _, task in self._flights.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def forget(self) -> None:
        """Drop what memory holds (confirmed tags, failures): a distribution or remote may
        have changed, here or on another process (the change feed). The next request
        reads the database again (a tag's last confirmation is kept there), not the
        upstream."""
        self._fresh.clear()
        self._failures.clear()

    def stale_served(self, mirror: Mirror, reference: str, why: str) -> None:
        """Stored content served without the upstream's confirmation: logged and counted."""
        log.warning("pull-through %s/%s:%s served stale from storage: %s",
                    mirror.distribution, mirror.upstream_name, reference, why)
        self._on_stale("manifest")

    # ------------------------------------------------------------------ requests

    async def resolve(self, target: Target, reference: str, may_fetch: bool) -> Target:
        """The Target whose version holds `reference` (a valid tag or digest).

        Raises RegistryError for what the client must be told, and FetchRefused
        when only an authenticated client may make it fetch.
        """
        mirror = target.mirror
        assert mirror is not None
        if not mirror.name_allowed:
            raise RegistryError("NAME_UNKNOWN", f"repository {mirror.upstream_name!r} is not"
                                " mirrored here (the remote's include_names/exclude_names)",
                                detail={"name": mirror.upstream_name})
        tag = _is_tag(reference)
        if tag and not mirror.tag_allowed(reference):
            raise RegistryError("MANIFEST_UNKNOWN", f"tag {reference!r} is not mirrored here"
                                " (the remote's include_tags/exclude_tags)",
                                detail={"name": mirror.upstream_name, "tag": reference})
        if len(mirror.repository_name) > MAX_NAME_LENGTH:
            raise RegistryError("NAME_INVALID", f"{mirror.upstream_name[:80]!r}…: the name is"
                                " too long for a repository of this distribution")
        if target.repository_uid and self._fresh.get((target.repository_uid, reference)):
            return target

        local = await self.services.db.read(
            lambda s: _local(s, mirror, reference, target.private))
        now = time.time()
        if local.target is not None and local.fresh(mirror, now):
            self._remember_fresh(local, mirror, reference, now)
            return local.target
        key: FlightKey = (mirror.distribution_id, mirror.upstream_name, reference)
        remembered = self._failures.get(key)
        if remembered is not None:
            return self._fallback(local, mirror, reference, remembered)
        if not may_fetch or mirror.remote_id is None:
            if local.held and local.target is not None:
                self.stale_served(mirror, reference, "not re-checked for an anonymous client"
                             if mirror.remote_id is not None else "the remote was deleted")
                return local.target
            if mirror.remote_id is None:
                raise RegistryError("UNAVAILABLE", "this pull-through distribution has no"
                                    " remote any more: only stored content is served")
            raise FetchRefused(f"{mirror.upstream_name}:{reference} is not stored, and this"
                               " distribution fetches new content only for authenticated"
                               " users: log in")

        started, flight = self._flight(key, mirror, reference, target.private)
        wait = self.services.settings.pull_through_wait
        if local.held:
            wait = max(0.0, STALE_WAIT - (time.monotonic() - started))
        try:
            async with asyncio.timeout(wait):
                found = await asyncio.shield(flight)
        except TimeoutError:
            if local.held and local.target is not None:
                self.stale_served(mirror, reference,
                                  f"the upstream did not answer within {wait:g} s")
                return local.target
            raise RegistryError("UNAVAILABLE", f"the upstream did not answer for"
                                f" {mirror.upstream_name}:{reference} within {wait:g} s;"
                                " the fetch goes on: retry") from None
        except FAILURES as exc:
            return self._fallback(local, mirror, reference, exc)
        self._fresh.put((found.repository_uid, reference), True, mirror.tag_ttl)
        return found

    def _remember_fresh(self, local: Local, mirror: Mirror, reference: str, now: float) -> None:
        """Skip the database for it a while: a tag until its tag_ttl ends; a digest (which
        stays in the repository) for tag_ttl seconds too, to bound stale memory."""
        if local.target is not None:
            left = mirror.tag_ttl if local.checked is None else local.checked + mirror.tag_ttl - now
            self._fresh.put((local.target.repository_uid, reference), True, left)

    def _fallback(self, local: Local, mirror: Mirror, reference: str,
                  exc: BaseException) -> Target:
        """After a failure: stale content when there is some (never for a 404), else the error."""
        if not isinstance(exc, NotFound) and local.held and local.target is not None:
            self.stale_served(mirror, reference, f"{type(exc).__name__}: {exc}")
            return local.target
        raise _as_registry_error(exc, mirror, reference) from None

    # ------------------------------------------------------------------ flights

    def _flight(self, key: FlightKey, mirror: Mirror, reference: str,
                private: bool) -> tuple[float, asyncio.Task[Target]]:
        running = self._flights.get(key)
        if running is not None:
            return running
        if len(self._flights) >= MAX_FLIGHTS:
            raise RegistryError("UNAVAILABLE", f"{MAX_FLIGHTS} pull-through fetches are in"
                                " progress: retry shortly")
        task = asyncio.create_task(self._fly(mirror, reference, private))
        entry = (time.monotonic(), task)
        self._flights[key] = entry

        def done(t: asyncio.Task[Target]) -> None:
            if self._flights.get(key) is entry:
                del self._flights[key]
            if t.cancelled():
                return
            exc = t.exception()  # retrieved here: waiters may all have left
            if isinstance(exc, FAILURES):
                ttl = mirror.negative_ttl if isinstance(exc, NotFound) \
                    else min(mirror.negative_ttl, FAILURE_MEMORY)
                self._failures.put(key, exc, ttl)
            elif exc is not None:
                log.error("pull-through fetch of %s/%s:%s failed: %r", mirror.distribution,
                          mirror.upstream_name, reference, exc)
            else:
                self._failures.forget(key)
        task.add_done_callback(done)
        return entry

    async def _fly(self, mirror: Mirror, reference: str, private: bool) -> Target:
        services = self.services
        db, me, ttl = services.db, services.worker, services.settings.lease_ttl
        key = _lease_key(mirror, reference)
        async with asyncio.timeout(MAX_FLIGHT):
            def claim(session: Session) -> leases.LeaseView | None:
                """A failure still remembered (by any process), or the claim's answer."""
                return leases.claim(session, key, me, ttl, services.cluster_url,
                                    answers=FAILURE_STATES)

            while True:
                try:
                    holder = await db.write(claim)
                except IntegrityError:
                    continue  # PostgreSQL: another process inserted the lease first
                if holder is None:
                    break
                ended = await self._follow(key) \
                    if holder.state is leases.LeaseState.RUNNING else holder
                local = await db.read(lambda s: _local(s, mirror, reference, private))
                if local.target is not None and local.fresh(mirror, time.time()):
                    return local.target
                if ended is not None and ended.state is leases.LeaseState.NOT_FOUND:
                    raise NotFound(f"{mirror.upstream_name}:{reference}: not found upstream"
                                   " (asked by another server)")
                if ended is not None and ended.state is leases.LeaseState.FAILED:
                    raise Unavailable(f"the upstream fetch of {mirror.upstream_name}:"
                                      f"{reference} by another server failed")
                # The other process is gone, gave up, or its content is stale: try ourselves.
            renewer = asyncio.create_task(self._renew(key))
            outcome: leases.LeaseState | None = leases.LeaseState.FAILED  # None: given up
            try:
                found = await self._fetch(mirror, reference, private)
                outcome = leases.LeaseState.DONE
                return found
            except NotFound:
                outcome = leases.LeaseState.NOT_FOUND
                raise
            except asyncio.CancelledError:
                outcome = None  # shutting down: another process may take it at once
                raise
            finally:
                renewer.cancel()

                def end(session: Session) -> None:
                    if outcome is None:
                        leases.release(session, key, me)
                    elif outcome is leases.LeaseState.DONE:
                        leases.end(session, key, me, ttl, outcome)
                    elif outcome is leases.LeaseState.NOT_FOUND:
                        # A 404 answers for every server as long as each remembers it
                        # (`negative_ttl`): a burst slower than BURST_MEMORY is one GET too.
                        leases.end(session, key, me,
                                   max(BURST_MEMORY, mirror.negative_ttl), outcome)
                    else:  # for the rest of the burst (see BURST_MEMORY)
                        leases.end(session, key, me, BURST_MEMORY, outcome)
                with contextlib.suppress(Exception):
                    await asyncio.shield(db.write(end))

    async def _follow(self, key: str) -> leases.LeaseView | None:
        """Until another process's lease on `key` ends (done, failed, given up or expired):
        how it ended (None: given up)."""
        while True:
            held = await self.services.db.read(lambda s: leases.get(s, key))
            if held is None or held.takeable(time.time()):
                return held
            await asyncio.sleep(FOLLOW_POLL)

    async def _renew(self, key: str) -> None:
        services = self.services
        me, ttl = services.worker, services.settings.lease_ttl
        while True:
            await asyncio.sleep(ttl / 3)
            await services.db.write(lambda s: leases.renew(s, key, me, ttl))

    async def _fetch(self, mirror: Mirror, reference: str, private: bool) -> Target:
        """Under the lease: what the database holds if still fresh, else the upstream's."""
        services = self.services
        db = services.db

        def load(session: Session) -> tuple[Local, Remote | None]:
            remote = session.get(Remote, mirror.remote_id) if mirror.remote_id else None
            return _local(session, mirror, reference, private), remote
        local, remote = await db.read(load)
        if local.target is not None and local.fresh(mirror, time.time()):
            return local.target
        if remote is None:
            raise NotFound("the distribution's remote was deleted")
        held = None
        if _is_tag(reference) and local.held and local.target is not None:
            target = local.target
            held = await db.read(lambda s: held_digest(s, target.repository_id, target.version,
                                                        reference))
        wanted = Wanted(remote.id, mirror.upstream_name, reference, held)
        checked = time.time()
        try:
            recorded = await fetch_one(
                services, self.fetcher, remote, wanted,
                repository=lambda s: routing.ensure_repository(s, mirror),
                extra=_mark_checked(reference, checked) if _is_tag(reference) else None)
        except NotFound:
            if held is not None and local.target is not None:
                repository_id = local.target.repository_id
                await db.write(lambda s: _forget_tag(s, repository_id, reference))
                log.info("pull-through %s/%s:%s: gone upstream, removed from the repository",
                         mirror.distribution, mirror.upstream_name, reference)
            raise
        log.info("pull-through %s/%s:%s: %s %s from the upstream (repository %s, version %d)",
                 mirror.distribution, mirror.upstream_name, reference,
                 "fetched" if recorded.created else "confirmed", recorded.digest,
                 mirror.repository_name, recorded.latest_version)
        return Target(recorded.repository_uid, recorded.repository_id, recorded.latest_version,
                      private, mirror)


def _forget_tag(session: Session, repository_id: int, tag: str) -> None:
    drop_tag(session, repository_id, tag)
    row = session.get(PullThroughTag, (repository_id, tag))
    if row is not None:
        session.delete(row)

