"""The data model.

Content (tags, manifests, blobs) is global and deduplicated; a repository version
is the set of content whose membership range covers its number:
`version_added <= N and (version_removed is null or version_removed > N)`.
Artifacts are what storage holds; a blob without an artifact is fetched lazily
from one of its `BlobSource`s.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# `sha512:` and 128 hex digits is 135 characters; a little room beyond.
DIGEST_LENGTH = 150


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Remote(Base):
    __tablename__ = "remotes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    url: Mapped[str] = mapped_column(Text)
    # "" for a remote that only serves pull-through distributions (they name the repository).
    upstream_name: Mapped[str] = mapped_column(String(255))
    policy: Mapped[str] = mapped_column(String(16), default="on_demand")
    include_tags: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    exclude_tags: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # os/architecture[/variant] whose index children a sync fetches; None or []: all.
    platforms: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # none | platform | all: start an image's layer downloads on its manifest's first GET.
    prefetch: Mapped[str] = mapped_column(String(16), default="none", server_default="none")
    username: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # Secrets are stored encrypted (`lazyreg.auth.secrets`), never in plain text.
    password_secret: Mapped[str | None] = mapped_column(Text, nullable=True)
    tls_verify: Mapped[bool] = mapped_column(Boolean, default=True)
    ca_cert: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The proxy URL without credentials; its `user:password` is `proxy_secret`, encrypted.
    proxy_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    proxy_secret: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Follow an upstream's redirects to link-local and cloud metadata addresses.
    allow_private_redirects: Mapped[bool] = mapped_column(Boolean, default=False)
    download_concurrency: Mapped[int] = mapped_column(Integer, default=8)
    # Also mirror the referrers (signatures, SBOMs, attestations) of every synced manifest.
    include_referrers: Mapped[bool] = mapped_column(Boolean, default=False)
    # A sync listing more tags than this fails, rather than exhaust memory.
    max_tags: Mapped[int] = mapped_column(Integer, default=100_000)
    # Pull-through: seconds a tag is trusted before a HEAD re-checks it, seconds an
    # upstream 404 is remembered, and globs on the upstream names that may be pulled.
    tag_ttl: Mapped[int] = mapped_column(Integer, default=300)
    negative_ttl: Mapped[int] = mapped_column(Integer, default=30)
    include_names: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    exclude_names: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def new_uid() -> str:
    return uuid.uuid4().hex


class Repository(Base):
    __tablename__ = "repositories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    latest_version: Mapped[int] = mapped_column(Integer, default=0)
    # Never reused, unlike SQLite's integer ids: what caches key a repository by, so
    # that nothing cached about a deleted repository can answer for a new one.
    uid: Mapped[str] = mapped_column(String(32), default=new_uid, index=True, unique=True)
    # Keep only the newest N versions (and those a distribution pins); None keeps all.
    retain_versions: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The download policy of the remote its latest sync used (None before any sync).
    # The blobs of every version of an `immediate` repository stay stored: reclaim
    # and the bounded cache never delete them (`lazyreg.db.space`).
    sync_policy: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RepositoryVersion(Base):
    __tablename__ = "repository_versions"
    __table_args__ = (UniqueConstraint("repository_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # {"tags": n, "manifests": n, "blobs": n} for content, added and removed.
    content_counts: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    added_counts: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    removed_counts: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    task_id: Mapped[str | None] = mapped_column(String(36), nullable=True)


class Content(Base):
    """One row per content unit; `kind` says which detail table holds it."""

    __tablename__ = "content"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # tag | manifest | blob
    # Orphan cleanup keeps content younger than its protection time. None: older
    # than schema 0005, which added the column.
    created: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                     nullable=True)


class Manifest(Base):
    __tablename__ = "manifests"

    id: Mapped[int] = mapped_column(ForeignKey("content.id"), primary_key=True)
    digest: Mapped[str] = mapped_column(String(DIGEST_LENGTH), unique=True)
    media_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    # Empty (PENDING, never a valid manifest): a child of an index that a sync with a
    # platform filter recorded but did not fetch (`media_type` and `size` are its
    # descriptor's); fetched on first request (`lazyreg.sync.pending`), then filled in.
    data: Mapped[bytes] = mapped_column(LargeBinary)
    config_digest: Mapped[str | None] = mapped_column(String(DIGEST_LENGTH), nullable=True)
    # OCI 1.1: the manifest this one refers to (a signature, an SBOM...), and its type.
    subject_digest: Mapped[str | None] = mapped_column(String(DIGEST_LENGTH), nullable=True,
                                                       index=True)
    artifact_type: Mapped[str | None] = mapped_column(String(255), nullable=True)


PENDING = b""  # Manifest.data of a manifest recorded but not fetched


class ManifestSource(Base):
    """A manifest whose bytes came from this remote's upstream repository and hashed right.

    A sync records a tag without a GET only when its digest is known from the
    same remote and upstream name, so that an upstream cannot claim another's content.
    """

    __tablename__ = "manifest_sources"

    manifest_id: Mapped[int] = mapped_column(ForeignKey("manifests.id"), primary_key=True)
    remote_id: Mapped[int] = mapped_column(ForeignKey("remotes.id", ondelete="CASCADE"),
                                           primary_key=True)
    upstream_name: Mapped[str] = mapped_column(String(255), primary_key=True)


class Blob(Base):
    __tablename__ = "blobs"

    id: Mapped[int] = mapped_column(ForeignKey("content.id"), primary_key=True)
    digest: Mapped[str] = mapped_column(String(DIGEST_LENGTH), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(255))


class Tag(Base):
    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("name", "manifest_id"),)

    id: Mapped[int] = mapped_column(ForeignKey("content.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    manifest_id: Mapped[int] = mapped_column(ForeignKey("manifests.id"), index=True)


class ManifestBlob(Base):
    """The config (position -1) and layers (0..n) of an image manifest."""

    __tablename__ = "manifest_blobs"

    manifest_id: Mapped[int] = mapped_column(ForeignKey("manifests.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    blob_id: Mapped[int] = mapped_column(ForeignKey("blobs.id"), index=True)


class ManifestChild(Base):
    """The entries of a manifest list / OCI index, with their platform."""

    __tablename__ = "manifest_children"

    list_id: Mapped[int] = mapped_column(ForeignKey("manifests.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    child_id: Mapped[int] = mapped_column(ForeignKey("manifests.id"), index=True)
    os: Mapped[str] = mapped_column(String(64), default="")
    architecture: Mapped[str] = mapped_column(String(64), default="")
    variant: Mapped[str] = mapped_column(String(64), default="")


class RepositoryContent(Base):
    """Membership range of a content unit in a repository's versions."""

    __tablename__ = "repository_content"
    __table_args__ = (
        Index("ix_repo_content_added", "repository_id", "version_added"),
        Index("ix_repo_content_unit", "repository_id", "content_id"),
        # "Does any version hold this content?": orphan cleanup and pinned blobs.
        Index("ix_repo_content_content", "content_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    content_id: Mapped[int] = mapped_column(ForeignKey("content.id"))
    version_added: Mapped[int] = mapped_column(Integer)
    version_removed: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Artifact(Base):
    """A blob or manifest that storage holds, keyed by digest."""

    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(DIGEST_LENGTH), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))  # manifest | config | layer | blob
    location: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Unix time it was last served to a client or reused by a sync, written in
    # batches (`lazyreg.db.usage`): the least recently used go first when the
    # cache is over its bound, and orphan cleanup keeps what was used lately.
    last_used: Mapped[float | None] = mapped_column(Float, nullable=True, index=True,
                                                    default=time.time)
    # A server process is sending it to a client until then (Unix time), renewed
    # while the transfer lasts: the bounded cache does not evict it.
    busy_until: Mapped[float | None] = mapped_column(Float, nullable=True)


class BlobSource(Base):
    """Where a blob can be fetched: a remote and the upstream repository that listed it."""

    __tablename__ = "blob_sources"
    __table_args__ = (UniqueConstraint("blob_id", "remote_id", "upstream_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    blob_id: Mapped[int] = mapped_column(ForeignKey("blobs.id"), index=True)
    remote_id: Mapped[int] = mapped_column(ForeignKey("remotes.id", ondelete="CASCADE"))
    upstream_name: Mapped[str] = mapped_column(String(255))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    cooldown_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Distribution(Base):
    __tablename__ = "distributions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    base_path: Mapped[str] = mapped_column(String(255), unique=True)
    repository_id: Mapped[int | None] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), nullable=True)
    repository_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("repository_versions.id", ondelete="CASCADE"), nullable=True)
    private: Mapped[bool] = mapped_column(Boolean, default=False)
    # On a pull-through distribution: may anonymous clients make it fetch new content?
    anonymous_pull_through: Mapped[bool] = mapped_column(Boolean, default=True)
    # A pull-through distribution serves every repository of its remote's upstream
    # under its base path, each fetched on first pull (`PullThroughRepository`).
    pull_through: Mapped[bool] = mapped_column(Boolean, default=False)
    remote_id: Mapped[int | None] = mapped_column(
        ForeignKey("remotes.id", ondelete="SET NULL"), nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PullThroughRepository(Base):
    """The repository a pull-through distribution created for one upstream name."""

    __tablename__ = "pull_through_repositories"
    __table_args__ = (UniqueConstraint("distribution_id", "upstream_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    distribution_id: Mapped[int] = mapped_column(
        ForeignKey("distributions.id", ondelete="CASCADE"))
    upstream_name: Mapped[str] = mapped_column(String(255))
    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), unique=True)


class PullThroughTag(Base):
    """When a pulled-through tag was last confirmed upstream (Unix time): it is
    trusted for the remote's `tag_ttl` seconds from then."""

    __tablename__ = "pull_through_tags"

    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    checked: Mapped[float] = mapped_column(Float)


class User(Base):
    """Someone who may use the management API (by role) and pull the private
    distributions they read. Only the argon2 hash of the password is kept."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))  # admin | viewer
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Carried by every token issued to the account: a password or role change bumps
    # it, which ends every earlier token (lazyreg.auth.accounts).
    token_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ApiToken(Base):
    """A live API or refresh token (its JWT is not kept: only its id and bounds).

    A token whose row is gone is revoked. `parent` is the token it was minted
    with, if any: revoking a token revokes what was minted from it.
    """

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the JWT's jti
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         index=True)
    kind: Mapped[str] = mapped_column(String(16))  # api | refresh
    parent: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DistributionReader(Base):
    """A user who may pull a private distribution."""

    __tablename__ = "distribution_readers"

    distribution_id: Mapped[int] = mapped_column(
        ForeignKey("distributions.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"),
                                         primary_key=True, index=True)


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="waiting", index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_resources: Mapped[list[str]] = mapped_column(JSON, default=list)
    # What the task skipped and why (a broken tag upstream), when it still completed.
    warnings: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The repository a sync works on: at most one running sync per repository.
    lock_key: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    worker: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SyncSchedule(Base):
    """A repository's sync that the server runs itself every `interval` seconds.

    A process claims a tick by moving `next_run` forward in one UPDATE that
    only matches while `next_run` is due (`lazyreg.db.schedules`): one claim
    per tick across every process. `task_id` is the task of the last run,
    `claimed` when it was claimed (its task row may not be written yet).
    """

    __tablename__ = "sync_schedules"

    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True)
    remote_id: Mapped[int] = mapped_column(ForeignKey("remotes.id", ondelete="CASCADE"))
    mirror: Mapped[bool] = mapped_column(Boolean, default=False)
    interval: Mapped[int] = mapped_column(Integer)  # seconds
    next_run: Mapped[float] = mapped_column(Float, index=True)  # Unix time
    task_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    claimed: Mapped[float | None] = mapped_column(Float, nullable=True)


class Lease(Base):
    """A claim on a named job (e.g. downloading one blob) by one server process.

    `state` is `running`, then `done` (the bytes were verified) or `failed`;
    see `lazyreg.db.leases`.
    """

    __tablename__ = "leases"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    expires: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16), default="running", server_default="running")
    # The owner's `cluster_url`: where its peers read what it downloads (None: not clustered).
    url: Mapped[str | None] = mapped_column(String(255), nullable=True)


class CacheCounter(Base):
    """One row: the generation of the last change published to the in-memory caches.

    Publishers bump it in the transaction that records their change, so its row
    lock orders them: changes commit in generation order (`lazyreg.db.changes`).
    """

    __tablename__ = "cache_counter"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)


class CacheChange(Base):
    """A change the in-memory caches of every process must hear about: a key to drop."""

    __tablename__ = "cache_changes"

    generation: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)


class CacheNode(Base):
    """A server process that keeps in-memory caches: the last generation it has applied,
    and when it last said so (Unix time, its own clock)."""

    __tablename__ = "cache_nodes"

    worker: Mapped[str] = mapped_column(String(255), primary_key=True)
    seen: Mapped[int] = mapped_column(BigInteger, default=0)
    heartbeat: Mapped[float] = mapped_column(Float)


class TrafficMinute(Base):
    """Blob traffic of every server process in one minute (`minute` -1: all time).

    See `lazyreg.db.traffic`.
    """

    __tablename__ = "traffic_minutes"

    minute: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hits: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    joins: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    misses: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    storage_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    joined_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    upstream_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    fetched_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
