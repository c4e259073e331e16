"""Fetch one tag (or one manifest by digest) of an upstream repository into a repository.

What an on_demand sync does for each tag, for one reference, as a pull-through
distribution needs it on a client's first request:

- a tag the repository already holds is HEADed first, and kept without a GET
  when the upstream's digest is one this remote and upstream name served
  before (`ManifestSource`: the sync's rule, so that an upstream cannot claim
  another's content); any other reference is fetched with a GET whose bytes
  decide the digest;
- its closure (index children to any depth, the sync's `ManifestGetter`) and
  its config blobs are fetched, verified and stored the way a sync stores
  them (`sync.store`: configs through the fetcher, manifests put whole, their
  artifacts recorded); layers are not: they are recorded with their source and
  fetched on demand;
- content rows, sources and one new version (additive, as a sync without
  `mirror`; the repository's `retain_versions` applied) are written in one
  transaction, with the caller's own rows (`extra`). The repository itself
  comes from the caller inside that transaction (`repository`): a pull-through
  distribution creates it only once the upstream has given what was asked.

Bounded: at most MANIFEST_BUDGET manifests for one reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lazyreg.db import content as q
from lazyreg.db.engine import Database
from lazyreg.db.models import Manifest, ManifestSource, Remote, Repository, Tag
from lazyreg.fetch import Fetcher, Source
from lazyreg.services import Services
from lazyreg.sync.closure import Budget, ManifestGetter
from lazyreg.sync.record import FetchedManifest, SyncFindings, record_sync
from lazyreg.sync.store import Configs, store_manifests

MANIFEST_BUDGET = 1000  # manifests fetched for one reference (an index and its children)
RECORD_ATTEMPTS = 3

RepositoryOf = Callable[[Session], Repository]
Extra = Callable[[Session, Repository], None]


@dataclass(frozen=True)
class Wanted:
    remote_id: int
    upstream_name: str
    reference: str  # a tag, or a digest
    held: str | None = None  # the digest the repository's latest version gives this tag

    @property
    def is_tag(self) -> bool:
        return ":" not in self.reference


@dataclass(frozen=True)
class Recorded:
    digest: str
    repository_uid: str
    repository_id: int
    latest_version: int  # after the write
    created: bool  # whether a new version was written (False: nothing changed)
    manifest_gets: int = 0  # manifests fetched with a GET (a HEAD that sufficed: 0)


def trusted_digests(session: Session, remote_id: int, upstream_name: str) -> set[str]:
    """Manifests this remote and upstream name served (and that hashed right) before."""
    return set(session.scalars(
        select(Manifest.digest).join(ManifestSource, ManifestSource.manifest_id == Manifest.id)
        .where(ManifestSource.remote_id == remote_id,
               ManifestSource.upstream_name == upstream_name)))


async def fetch_one(services: Services, fetcher: Fetcher, remote: Remote,
                    wanted: Wanted, repository: RepositoryOf,
                    extra: Extra | None = None) -> Recorded:
    """Fetch `wanted` into `repository(session)`; UpstreamError, InvalidManifest or
    ClosureError when the upstream cannot give it (no version is written then)."""
    db, name = services.db, wanted.upstream_name
    client = services.upstream_for(remote)
    trusted = await db.read(lambda s: trusted_digests(s, wanted.remote_id, name))
    if wanted.is_tag and wanted.held is not None:
        info = await client.head_manifest(name, wanted.reference)
        if info.digest and info.digest in trusted:
            return await _record(db, wanted, info.digest, {}, repository, extra, 0)
    gets = 0

    def counted() -> None:
        nonlocal gets
        gets += 1
    getter = ManifestGetter(client, name, trusted,
                            Budget(total=MANIFEST_BUDGET, per_root=MANIFEST_BUDGET),
                            on_fetched=counted)
    try:
        root = await (getter.by_tag(wanted.reference) if wanted.is_tag
                      else getter.by_digest(wanted.reference))
        closure = await getter.closure(root)
    finally:
        await getter.close()
    configs = Configs(fetcher, Source(client, name, remote_name=remote.name,
                                      policy=remote.policy))
    try:
        await configs.store(closure.values())
    finally:
        await configs.close()
    await store_manifests(services, closure.values())
    return await _record(db, wanted, root.digest, closure, repository, extra, gets)


async def _record(db: Database, wanted: Wanted, digest: str,
                  closure: dict[str, FetchedManifest], repository: RepositoryOf,
                  extra: Extra | None, gets: int) -> Recorded:
    def write(session: Session) -> Recorded:
        repo = repository(session)
        findings = SyncFindings(
            repository_id=repo.id, remote_id=wanted.remote_id,
            upstream_name=wanted.upstream_name, mirror=False,
            tags={wanted.reference: digest} if wanted.is_tag else {},
            new_manifests=closure, untagged=set() if wanted.is_tag else {digest})
        version = record_sync(session, findings, None)
        if extra is not None:
            extra(session, repo)
        return Recorded(digest, repo.uid, repo.id, repo.latest_version, version is not None,
                        gets)
    # A concurrent writer of the same repository (another tag, another process) may
    # take the next version number or insert the same new content first: retry.
    for attempt in range(RECORD_ATTEMPTS):
        try:
            return await db.write(write)
        except IntegrityError:
            if attempt == RECORD_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def drop_tag(session: Session, repository_id: int, tag: str) -> int | None:
    """A new version without tag `tag` (the upstream no longer has it); its number,
    or None when the latest version does not hold it. Its manifests stay, untagged."""
    repository = session.get_one(Repository, repository_id)
    current = q.version_content_ids(session, repository.id, repository.latest_version)
    gone = {tid for tid, name in q.tag_names(session, current).items() if name == tag}
    if not gone:
        return None
    version = q.create_version(session, repository, current - gone)
    return version.number if version is not None else None


def held_digest(session: Session, repository_id: int, version: int, tag: str) -> str | None:
    """The digest version `version` of the repository gives tag `tag`, if any."""
    return session.scalar(
        select(Manifest.digest).join(Tag, Tag.manifest_id == Manifest.id)
        .where(Tag.name == tag, Tag.id.in_(q.in_version(repository_id, version))))

