"""Sync a repository from a remote.

1. list the upstream's tags a page at a time: the remote's include/exclude
   patterns (globs, `re:` regexes), the tag grammar and `max_tags` decide which
   are kept (`tags.py`); digests in include_tags are pinned, untagged;
2. each tag, TAG_WORKERS at a time: a tag the version already holds is HEADed
   and kept without a GET when its digest is one this remote and upstream name
   served before; any other tag is fetched with a GET, whose bytes decide the
   digest. Then its closure (children to any depth; with the remote's
   `platforms`, an index's children of other platforms are only recorded, to
   be fetched on demand: `pending.py`) and its config blobs.
   A broken tag is skipped with a warning, or fails a `strict` sync;
3. with `include_referrers`, the referrers of every synced manifest, the same way;
4. every blob with `immediate` (and any config still missing), BLOB_WORKERS at a time;
5. write content and one new version in one transaction.

Configs and layers are stored through the fetcher, like any blob download
(`store.py`). Nothing is written to the database before step 5 except the
artifacts of what was stored (configs, layers, and the fetched manifests),
which are whole, verified and reusable whether or not a version follows.

The task runner calls this through the `sync` task kind (`task.py`); the sync
reports on a `TaskContext` and does not import the task layer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lazyreg.db import content as q
from lazyreg.db.artifacts import stored_digests
from lazyreg.db.engine import Database
from lazyreg.db.models import (
    Artifact,
    Blob,
    Manifest,
    ManifestBlob,
    ManifestSource,
    Remote,
    Repository,
    RepositoryVersion,
)
from lazyreg.errors import NotFound
from lazyreg.fetch import Fetcher, Source
from lazyreg.oci.platforms import PlatformFilter
from lazyreg.services import Services
from lazyreg.sync.closure import ALL_PLATFORMS, Budget, ManifestGetter
from lazyreg.sync.problems import ITEM_ERRORS, NothingSynced, Problems
from lazyreg.sync.record import FetchedManifest, SyncFindings, record_sync
from lazyreg.sync.referrers import find_referrers
from lazyreg.sync.store import Configs, Manifests
from lazyreg.sync.tags import TagListing, list_tags
from lazyreg.sync.workers import drain
from lazyreg.taskcontext import TaskContext
from lazyreg.upstream.client import UpstreamClient
from lazyreg.upstream.errors import RedirectRefused

log = logging.getLogger(__name__)

# Tags (or referrer subjects) in progress at once: enough to keep the remote's
# request slots busy while some tags wait for their configs.
TAG_WORKERS = 32
BLOB_WORKERS = 8  # blob downloads started at once by an immediate sync
MANIFESTS_PER_TAG = 10  # a sync may fetch 10 manifests per tag of the remote's max_tags


@dataclass(frozen=True)
class BlobNeed:
    digest: str
    size: int
    is_config: bool


async def sync_repository(ctx: TaskContext, services: Services, fetcher: Fetcher,
                          repository_name: str, remote_name: str, mirror: bool,
                          strict: bool = False) -> list[str]:
    """Sync the repository from the remote; the new version's path, or none when unchanged."""
    progress = ctx.progress

    def load(session: Session) -> tuple[Repository, Remote, set[str], set[str]]:
        repo = session.scalar(select(Repository).where(Repository.name == repository_name))
        if repo is None:
            raise NotFound("repository", repository_name)
        remote = session.scalar(select(Remote).where(Remote.name == remote_name))
        if remote is None:
            raise NotFound("remote", remote_name)
        known_tags = {name for name, _ in session.execute(
            q.tags_in_version(session, repo.id, repo.latest_version))}
        trusted = set(session.scalars(
            select(Manifest.digest).join(ManifestSource, ManifestSource.manifest_id == Manifest.id)
            .where(ManifestSource.remote_id == remote.id,
                   ManifestSource.upstream_name == remote.upstream_name)))
        return repo, remote, known_tags, trusted
    repo, remote, known_tags, trusted = await services.db.read(load)
    client = services.upstream_for(remote)
    name = remote.upstream_name

    progress.message = f"listing tags of {name}"
    listing = await list_tags(client, name, remote.include_tags, remote.exclude_tags,
                              remote.max_tags, remote.include_referrers)
    source = Source(client, name, remote_name=remote.name, policy=remote.policy)
    run = SyncRun(ctx, services, fetcher, source, client, known_tags, trusted, strict,
                  Budget(total=max(1000, MANIFESTS_PER_TAG * remote.max_tags)),
                  PlatformFilter.of(remote.platforms))
    try:
        return await _sync(run, fetcher, source, repo, remote, listing, mirror)
    finally:
        ctx.warnings[:] = run.problems.as_list()
        await run.close()


async def _sync(run: SyncRun, fetcher: Fetcher, source: Source, repo: Repository,
                remote: Remote, listing: TagListing, mirror: bool) -> list[str]:
    services, progress = run.services, run.ctx.progress
    for tag in listing.invalid:
        run.problems.skip(f"tag {tag}", "not a valid tag name (never requested upstream)")
    progress.add_total("tags", len(listing.selected))
    progress.message = "fetching manifests"
    await drain(listing.selected, run.sync_tag_only, TAG_WORKERS)
    if listing.pinned:
        progress.add_total("pinned", len(listing.pinned))
        await drain(listing.pinned, run.sync_pinned, TAG_WORKERS)
    if remote.include_referrers and run.tags:
        progress.message = "looking for referrers"
        subjects = await run.closure_digests(set(run.tags.values()))
        await run.sync_referrers(subjects, listing.referrer_tags)
    if not run.tags and not run.untagged and (listing.selected or listing.invalid
                                              or listing.pinned):
        raise NothingSynced("no tag could be synced: " + "; ".join(run.problems.as_list()[:5]))

    progress.message = "storing blobs"
    await _fetch_blobs(run, fetcher, source, remote)

    progress.message = "creating the repository version"
    await run.manifests.finish()
    findings = SyncFindings(repository_id=repo.id, remote_id=remote.id,
                            upstream_name=run.name, mirror=mirror, tags=run.tags,
                            new_manifests=run.fetched, untagged=run.untagged,
                            keep_tags=run.failed_tags, pending=run.getter.pending)
    version = await _record(services.db, findings, run.ctx.task_id)
    if version is None:
        progress.message = f"no changes: version {repo.latest_version} is up to date"
        return []
    counts = version.content_counts
    progress.message = (f"created version {version.number}: {counts.get('tags', 0)} tags,"
                        f" {counts.get('manifests', 0)} manifests, {counts.get('blobs', 0)} blobs")
    if run.problems.count:
        progress.message += f" ({run.problems.count} skipped: see warnings)"
    return [f"repositories/{quote(repo.name, safe='')}/versions/{version.number}/"]


class SyncRun:
    """The state of one sync: what was synced, fetched, stored and skipped."""

    def __init__(self, ctx: TaskContext, services: Services, fetcher: Fetcher, source: Source,
                 client: UpstreamClient, known_tags: set[str], trusted: set[str],
                 strict: bool, budget: Budget,
                 platforms: PlatformFilter = ALL_PLATFORMS) -> None:
        self.ctx = ctx
        self.services = services
        self.client = client
        self.name = source.upstream_name
        self.known_tags = known_tags
        self.problems = Problems(strict)
        self.tags: dict[str, str] = {}  # synced tag -> manifest digest
        self.fetched: dict[str, FetchedManifest] = {}  # closures of synced tags and referrers
        self.untagged: set[str] = set()  # referrers found by digest
        self.failed_tags: set[str] = set()
        self._started_tags: set[str] = set()
        self.getter = ManifestGetter(client, self.name, trusted, budget,
                                     on_fetched=self._fetched_one, platforms=platforms)
        progress = ctx.progress
        self.configs = Configs(fetcher, source, on_new=lambda: progress.add_total("blobs"),
                               on_stored=lambda: progress.advance("blobs"))
        self.manifests = Manifests(services)  # stored as they are accepted

    def _fetched_one(self) -> None:
        # How many a sync will fetch is known only as it goes: both counters move.
        self.ctx.progress.add_total("manifests")
        self.ctx.progress.advance("manifests")

    async def close(self) -> None:
        await self.configs.close()
        await self.getter.close()
        await self.manifests.close()

    # ------------------------------------------------------------------ tags

    async def sync_tag_only(self, tag: str) -> None:
        await self.sync_tag(tag)

    async def sync_tag(self, tag: str) -> dict[str, FetchedManifest] | None:
        """Sync one tag; the manifests fetched for it, or None when it was skipped."""
        if tag in self._started_tags:
            return {}
        self._started_tags.add(tag)
        progress = self.ctx.progress
        try:
            if tag in self.known_tags:
                info = await self.client.head_manifest(self.name, tag)
                if info.digest and info.digest in self.getter.trusted:
                    self.tags[tag] = info.digest
                    return {}
            root = await self.getter.by_tag(tag)
            closure = await self.getter.closure(root)
            await self.store_configs(closure)
        except ITEM_ERRORS as exc:
            self.failed_tags.add(tag)
            self.problems.skip(f"tag {tag!r}", exc)
            return None
        finally:
            progress.advance("tags")
        self._accept(closure)
        self.tags[tag] = root.digest
        return closure

    async def sync_pinned(self, digest: str) -> None:
        """A digest of include_tags: that manifest, untagged, with its closure."""
        await self.sync_untagged(digest, "pinned manifest")
        self.ctx.progress.advance("pinned")

    async def sync_untagged(self, digest: str, what: str = "referrer"
                            ) -> dict[str, FetchedManifest] | None:
        """Sync a manifest named by digest (a referrer, a pinned one) with its closure."""
        try:
            if digest in self.getter.trusted:
                self.untagged.add(digest)
                return {}
            root = await self.getter.by_digest(digest)
            closure = await self.getter.closure(root)
            await self.store_configs(closure)
        except ITEM_ERRORS as exc:
            self.problems.skip(f"{what} {digest}", exc)
            return None
        self._accept(closure)
        self.untagged.add(digest)
        return closure

    def _accept(self, closure: dict[str, FetchedManifest]) -> None:
        self.fetched.update(closure)
        self.manifests.add(closure.values())
        # Served by this upstream and verified: later references need no new GET.
        self.getter.trusted.update(closure)

    # ------------------------------------------------------------------ referrers

    async def sync_referrers(self, subjects: set[str], listed: set[str]) -> None:
        visited = set(subjects)

        async def work(subject: str) -> list[str]:
            try:
                found = await find_referrers(self.client, self.name, subject, listed)
            except ITEM_ERRORS as exc:
                self.problems.skip(f"referrers of {subject}", exc)
                return []
            new: set[str] = set()
            for tag in found.tags:
                if tag in self.tags or tag in self._started_tags:
                    continue
                self.ctx.progress.add_total("tags")
                if await self.sync_tag(tag) is not None and tag in self.tags:
                    new |= await self.closure_digests({self.tags[tag]})
            for digest in found.digests:
                if digest not in visited and await self.sync_untagged(digest) is not None:
                    new |= await self.closure_digests({digest})
            fresh = sorted(new - visited)
            visited.update(fresh)
            return fresh  # referrers have referrers too (a signed SBOM)
        await drain(sorted(subjects), work, TAG_WORKERS)

    async def closure_digests(self, tops: set[str]) -> set[str]:
        """Digests of every manifest reachable from `tops`, in memory or in the database."""
        in_memory: set[str] = set()
        recorded: set[str] = set()
        stack = list(tops)
        while stack:
            digest = stack.pop()
            if digest in in_memory:
                continue
            m = self.fetched.get(digest)
            if m is None:
                recorded.add(digest)
                continue
            in_memory.add(digest)
            stack.extend(c.descriptor.digest for c in m.parsed.children)
        if not recorded:
            return in_memory

        def query(session: Session) -> set[str]:
            ids = q.manifest_ids_by_digest(session, sorted(recorded))
            manifests, _ = q.manifest_closure(session, ids.values())
            out: set[str] = set()
            for batch in q.chunked(sorted(manifests)):
                out.update(session.scalars(select(Manifest.digest).where(Manifest.id.in_(batch))))
            return out
        return in_memory | await self.services.db.read(query)

    # ------------------------------------------------------------------ configs

    async def store_configs(self, closure: dict[str, FetchedManifest]) -> None:
        """Fetch, verify and store the (small) config blobs a tag's manifests name."""
        await self.configs.store(closure.values())


async def _fetch_blobs(run: SyncRun, fetcher: Fetcher, source: Source, remote: Remote) -> None:
    """Configs still missing, and with `immediate` every layer, through the fetcher."""
    services, progress = run.services, run.ctx.progress
    referenced = await run.closure_digests(set(run.tags.values()) | run.untagged)
    recorded = referenced - set(run.fetched)
    # Without `immediate`, only configs are stored: the database is asked only for
    # those that are not (a re-sync reads no layer rows; measured on 200 tags: a fifth
    # of the re-sync's Python time went to listing every blob of every manifest).
    configs_only = remote.policy != "immediate"
    needs = await services.db.read(
        lambda s: _blob_needs(s, run.fetched, recorded, configs_only))
    fetched = run.configs.fetched  # stored by this sync
    needs = [n for n in needs if n.digest not in fetched]
    stored = await services.db.read(lambda s: stored_digests(s, [n.digest for n in needs]))
    services.usage.used(stored)  # reused: orphan cleanup keeps it
    wanted = [n for n in needs if n.digest not in stored
              and (n.is_config or remote.policy == "immediate")]
    if not wanted:
        return
    progress.add_total("blobs", len(wanted))
    refused: dict[str, RedirectRefused] = {}

    async def fetch(need: BlobNeed) -> None:
        try:
            await fetcher.fetch(need.digest, need.size, [source],
                                kind="config" if need.is_config else "layer")
        except RedirectRefused as exc:
            refused[need.digest] = exc  # its tags are skipped below, not the whole sync
        progress.advance("blobs")
    await drain(wanted, fetch, BLOB_WORKERS)
    if refused:
        _skip_refused(run, refused)


def _skip_refused(run: SyncRun, refused: dict[str, RedirectRefused]) -> None:
    """Skip the tags whose blobs the upstream redirected where we do not go. A blob
    reached only through manifests recorded by an earlier sync cannot be told to a
    tag here: then the sync fails with the refusal, as before."""
    blamed: set[str] = set()
    for tag, root in list(run.tags.items()):
        blobs: set[str] = set()
        stack, seen = [root], set()
        while stack:  # bounded: the manifests this sync fetched
            digest = stack.pop()
            m = run.fetched.get(digest)
            if m is None or digest in seen:
                continue
            seen.add(digest)
            blobs.update(d.digest for d in m.parsed.blobs)
            stack.extend(c.descriptor.digest for c in m.parsed.children)
        hit = sorted(blobs & refused.keys())
        if hit:
            del run.tags[tag]
            run.failed_tags.add(tag)
            blamed.update(hit)
            run.problems.skip(f"tag {tag!r}", refused[hit[0]])
    unblamed = refused.keys() - blamed
    if unblamed:
        raise refused[min(unblamed)]
    if not run.tags and not run.untagged:
        raise NothingSynced("no tag could be synced: " + "; ".join(run.problems.as_list()[:5]))


async def _record(db: Database, findings: SyncFindings, task_id: str) -> RepositoryVersion | None:
    # A concurrent sync of another repository may insert the same new content
    # first (a unique violation on PostgreSQL): the next attempt finds it.
    attempts = 3
    while True:
        try:
            return await db.write(lambda s: record_sync(s, findings, task_id))
        except IntegrityError:
            attempts -= 1
            if not attempts:
                raise


def _blob_needs(session: Session, fetched: dict[str, FetchedManifest],
                recorded: Iterable[str], configs_only: bool = False) -> list[BlobNeed]:
    """The blobs of the synced manifests: from memory, or from the database for
    those recorded before. Foreign layers are not among them. `configs_only`: of
    the manifests recorded before, only the configs that are not stored (their
    stored blobs were marked used when those manifests were synced)."""
    needs: dict[str, BlobNeed] = {}
    for m in fetched.values():
        for pos, blob in m.parsed.linked_blobs:
            if pos == -1:
                needs[blob.digest] = BlobNeed(blob.digest, blob.size, True)
            else:
                needs.setdefault(blob.digest, BlobNeed(blob.digest, blob.size, False))
    ids = q.manifest_ids_by_digest(session, sorted(recorded))
    for batch in q.chunked(sorted(ids.values())):
        stmt = (select(Blob.digest, Blob.size, Manifest.config_digest)
                .join(ManifestBlob, ManifestBlob.blob_id == Blob.id)
                .join(Manifest, Manifest.id == ManifestBlob.manifest_id)
                .where(ManifestBlob.manifest_id.in_(batch)))
        if configs_only:
            stmt = stmt.where(ManifestBlob.position == -1,
                              ~select(Artifact.id).where(Artifact.digest == Blob.digest)
                              .exists())
        for digest, size, config_digest in session.execute(stmt):
            is_config = digest == config_digest
            if is_config or digest not in needs:
                needs[digest] = BlobNeed(digest, size, is_config)
    return list(needs.values())
