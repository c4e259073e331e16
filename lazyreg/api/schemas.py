"""Request and response bodies of the management API.

`*In` models validate what clients send (unknown fields are refused, so that a
typo is an error, not a silently ignored setting); `*Out` models are what the
API answers. The OpenAPI document is generated from these same models.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from lazyreg.auth.policy import Role as Role
from lazyreg.oci.names import is_repository_name, is_resource_name
from lazyreg.types import Policy as Policy  # re-exported: api/ imports both from here
from lazyreg.types import TaskState as TaskState

T = TypeVar("T")


def _as_utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; every timestamp lazyreg writes is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _invalid(message: str) -> PydanticCustomError:
    # Unlike a ValueError, the message reaches the client without a "Value error, " prefix.
    return PydanticCustomError("invalid", message)


def _resource_name(value: str) -> str:
    if not is_resource_name(value):
        raise _invalid("must be 1-255 characters of letters, digits, '.', '_' or '-',"
                         " starting with a letter or digit")
    return value


def _repository_path(value: str) -> str:
    if not is_repository_name(value):
        raise _invalid("must be a repository name: lowercase path components"
                         " [a-z0-9] with '.', '_', '__' or '-' separators, joined by '/'")
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _invalid("must be an http:// or https:// URL with a host")
    return value.rstrip("/")


def _pem_certificates(value: str) -> str:
    # Refusing a bad CA here beats a sync failing later with an opaque TLS error.
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=value)
    except (ssl.SSLError, ValueError) as exc:
        raise _invalid(f"must be PEM-encoded CA certificates: {exc}") from None
    return value


def _globs(value: list[str] | None) -> list[str] | None:
    if value is not None and any(not g.strip() for g in value):
        raise _invalid("tag globs must not be empty")
    return value


Timestamp = Annotated[datetime, AfterValidator(_as_utc)]
ResourceName = Annotated[str, AfterValidator(_resource_name)]
RepositoryPath = Annotated[str, AfterValidator(_repository_path)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
PemText = Annotated[str, AfterValidator(_pem_certificates)]
TagGlobs = Annotated[list[str] | None, AfterValidator(_globs)]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Counts(BaseModel):
    tags: int = 0
    manifests: int = 0
    blobs: int = 0


# --- remotes ---------------------------------------------------------------


class RemoteIn(Input):
    name: ResourceName
    url: HttpUrl = Field(description="Base URL of the upstream registry")
    upstream_name: RepositoryPath = Field(description="Repository name on the upstream")
    policy: Policy = "on_demand"
    include_tags: TagGlobs = Field(None, description="Shell-style globs; null means all tags")
    exclude_tags: TagGlobs = None
    username: str | None = Field(None, max_length=255)
    password: str | None = Field(None, max_length=4096,
                                 description="Write-only: stored encrypted, never returned")
    tls_verify: bool = True
    ca_cert: PemText | None = Field(None, description="PEM CA certificates to trust")
    proxy_url: HttpUrl | None = Field(None, description="Its user:password is stored"
                                      " encrypted and never returned")
    download_concurrency: int = Field(8, ge=1, le=64)
    allow_private_redirects: bool = Field(
        False, description="Follow the upstream's redirects to link-local and cloud metadata"
        " addresses (169.254.0.0/16, fd00:ec2::254)")
    include_referrers: bool = Field(
        False, description="Also mirror the referrers (signatures, SBOMs, attestations)"
                           " of every synced manifest")
    max_tags: int = Field(100_000, ge=1, le=10_000_000,
                          description="A sync of an upstream listing more tags fails")


class RemoteOut(BaseModel):
    name: str
    url: str
    upstream_name: str
    policy: Policy
    include_tags: list[str] | None
    exclude_tags: list[str] | None
    username: str | None
    has_password: bool
    tls_verify: bool
    ca_cert: str | None
    proxy_url: str | None
    has_proxy_credentials: bool
    download_concurrency: int
    allow_private_redirects: bool
    include_referrers: bool
    max_tags: int
    created: Timestamp


# --- repositories ----------------------------------------------------------


class RepositoryIn(Input):
    name: ResourceName
    description: str = ""


class RepositoryOut(BaseModel):
    name: str
    description: str
    latest_version: int
    created: Timestamp
    versions_href: str


class VersionOut(BaseModel):
    number: int
    created: Timestamp
    content_counts: Counts
    added: Counts
    removed: Counts


class SyncIn(Input):
    remote: str = Field(description="Name of the remote to sync from")
    mirror: bool = Field(False, description="Make the new version equal to the upstream")
    strict: bool = Field(False, description="Fail the whole sync on any broken tag, instead"
                                            " of skipping it with a warning")


# --- distributions ---------------------------------------------------------


class DistributionIn(Input):
    name: ResourceName
    base_path: RepositoryPath = Field(description="The name clients pull: HOST/<base_path>")
    repository: str
    repository_version: int | None = Field(
        None, ge=0, description="Pin this version number; null serves the latest version")
    private: bool = False
    readers: list[str] = Field(default_factory=list, max_length=1000,
                               description="Users who may pull it when it is private")
    anonymous_pull_through: bool = Field(
        True, description="Pull-through: may anonymous clients make it fetch new content")


class DistributionOut(BaseModel):
    name: str
    base_path: str
    repository: str
    repository_version: int | None
    private: bool
    readers: list[str]
    anonymous_pull_through: bool
    created: Timestamp


# --- users and tokens ------------------------------------------------------


class UserIn(Input):
    username: ResourceName
    password: str = Field(min_length=8, max_length=1024, description="Write-only")
    role: Role = "viewer"


class UserUpdate(Input):
    password: str | None = Field(None, min_length=8, max_length=1024)
    role: Role | None = None


class UserOut(BaseModel):
    username: str
    role: Role
    created: Timestamp


class TokenIn(Input):
    expires_in: int | None = Field(None, ge=60, description="Seconds the token is valid"
                                   " (default and maximum are server settings)")


class TokenOut(BaseModel):
    token: str
    expires: Timestamp


# --- content and artifacts -------------------------------------------------


class TagOut(BaseModel):
    name: str
    digest: str
    media_type: str


class ManifestOut(BaseModel):
    digest: str
    media_type: str
    size: int
    is_list: bool
    stored: bool


class ArtifactRef(BaseModel):
    digest: str
    size: int
    kind: str
    location: str


class SourceOut(BaseModel):
    """Where a blob not stored can be fetched; a failing one cools down for a while."""

    remote: str
    upstream_name: str
    failures: int
    last_error: str | None
    cooldown_until: Timestamp | None


class BlobOut(BaseModel):
    digest: str
    size: int
    media_type: str
    stored: bool
    artifact: ArtifactRef | None
    sources: list[SourceOut]


class CheckOut(BaseModel):
    """Database and storage compared; `ok` when every list is empty."""

    ok: bool
    artifacts_without_file: list[str]
    files_without_artifact: list[str]
    size_mismatches: list[str]
    digest_mismatches: list[str]
    inconsistent_repositories: list[str]
    artifacts: int
    files: int
    verified: bool


class ArtifactOut(ArtifactRef):
    created: Timestamp


class KindSummary(BaseModel):
    count: int = 0
    bytes: int = 0


class ArtifactSummary(BaseModel):
    count: int
    bytes: int
    by_kind: dict[str, KindSummary]


# --- tasks and status ------------------------------------------------------


class TaskOut(BaseModel):
    id: str
    kind: str
    state: TaskState
    params: dict[str, Any]
    progress: dict[str, Any]
    error: str | None
    created: Timestamp
    started: Timestamp | None
    finished: Timestamp | None
    created_resources: list[str]
    warnings: list[str] = Field(description="What a sync skipped (a broken tag) and why")


class StorageStatus(BaseModel):
    path: str
    total_bytes: int | None
    free_bytes: int | None


class StatusCounts(BaseModel):
    remotes: int
    repositories: int
    distributions: int
    tasks_running: int


class StatusOut(BaseModel):
    version: str
    database: Literal["sqlite", "postgresql"]
    storage: StorageStatus
    artifacts: ArtifactSummary
    counts: StatusCounts


# --- envelopes -------------------------------------------------------------


class Page(BaseModel, Generic[T]):
    count: int
    next: str | None
    previous: str | None
    results: list[T]


class ArtifactPage(Page[ArtifactOut]):
    summary: ArtifactSummary


class ErrorOut(BaseModel):
    detail: str
    field: str | None
