"""Request and response bodies of the management API.

`*In` models validate what clients send (unknown fields are refused, so that a
typo is an error, not a silently ignored setting; types are strict, so that
`"mirror": "yes"` is an error, not `true`; strings and numbers are bounded, see
`lazyreg.api.limits`); `*Out` models are what the API answers. The OpenAPI
document is generated from these same models.
"""

from __future__ import annotations

import re
import ssl
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from lazyreg.api.limits import (
    MAX_CREDENTIAL_LENGTH,
    MAX_DESCRIPTION_LENGTH,
    MAX_GLOB_LENGTH,
    MAX_GLOBS,
    MAX_INT,
)
from lazyreg.auth.policy import Role as Role
from lazyreg.oci import tagfilter
from lazyreg.oci.names import (
    MAX_NAME_LENGTH,
    NAME_RE,
    RESOURCE_NAME_RE,
    is_repository_name,
    is_resource_name,
)
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
    # isprintable: the grammar's "$" also matches before a final newline.
    if not (is_resource_name(value) and value.isprintable()):
        raise _invalid("must be 1-255 characters of letters, digits, '.', '_' or '-',"
                         " starting with a letter or digit")
    return value


def _repository_path(value: str) -> str:
    if not (is_repository_name(value) and value.isprintable()):
        raise _invalid("must be a repository name: lowercase path components"
                         " [a-z0-9] with '.', '_', '__' or '-' separators, joined by '/'")
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if (parts.scheme not in ("http", "https") or not parts.hostname
            or not value.isprintable() or any(c.isspace() for c in value)):
        raise _invalid("must be an http:// or https:// URL with a host")
    try:
        parts.port  # noqa: B018 -- parsed on access: a port over 65535 raises here
    except ValueError:
        raise _invalid("must have a port from 0 to 65535") from None
    return value.rstrip("/")


def _pem_certificates(value: str) -> str:
    # Refusing a bad CA here beats a sync failing later with an opaque TLS error.
    if not value.isascii():
        # ssl raises a TypeError for non-ASCII text, which pydantic would not catch.
        raise _invalid("must be PEM-encoded CA certificates, which are ASCII text")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=value)
    except (ssl.SSLError, ValueError, TypeError) as exc:
        raise _invalid(f"must be PEM-encoded CA certificates: {exc}") from None
    return value


_TAG_CHAR = re.compile(r"[A-Za-z0-9._-]")
_NAME_CHAR = re.compile(r"[a-z0-9._/-]")


def _glob_error(glob: str, allowed: re.Pattern[str] = _TAG_CHAR, what: str = "tag"
                ) -> str | None:
    """Why `glob` (fnmatch syntax) can never select a `what`, or None if it can."""
    if not glob.strip():
        return f"{what} globs must not be empty"
    if len(glob) > MAX_GLOB_LENGTH:
        return f"a {what} glob has at most {MAX_GLOB_LENGTH} characters"
    i = 0
    while i < len(glob):
        char = glob[i]
        if char == "[":
            # fnmatch's classes: "[!" negates, and a "]" right after the opening is literal.
            start = i + 1
            start += glob.startswith("!", start)
            start += glob.startswith("]", start)
            close = glob.find("]", start)
            if close < 0:
                # fnmatch would take the "[" literally, and no tag holds a "[".
                return f"{glob!r}: the '[' at position {i} is never closed"
            i = close + 1
        elif char in "*?" or allowed.fullmatch(char):
            i += 1
        else:
            return f"{glob!r}: {char!r} is not allowed in a {what}, so this glob matches nothing"
    return None


def _tag_pattern_error(pattern: str, digests: bool) -> str | None:
    """Why a tag pattern (glob, `re:` regex, or digest to pin) is refused, or None."""
    if tagfilter.is_regex(pattern):
        return tagfilter.regex_error(pattern)
    if tagfilter.is_digest_pattern(pattern):
        if not digests:
            return (f"{pattern!r}: a digest pins a manifest in include_tags; exclude_tags"
                    " takes globs and 're:' patterns only")
        return tagfilter.digest_error(pattern)
    return _glob_error(pattern)


def _tag_patterns(value: list[str] | None, digests: bool) -> list[str] | None:
    if value is None:
        return value
    if len(value) > MAX_GLOBS:
        raise _invalid(f"at most {MAX_GLOBS} tag patterns")
    for pattern in value:
        error = _tag_pattern_error(pattern, digests)
        if error:
            raise _invalid(error)
    return value


def _include_tags(value: list[str] | None) -> list[str] | None:
    return _tag_patterns(value, digests=True)


def _exclude_tags(value: list[str] | None) -> list[str] | None:
    return _tag_patterns(value, digests=False)


_PLATFORM_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}/[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}"
                          r"(/[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63})?\Z")


def _platforms(value: list[str] | None) -> list[str] | None:
    if value is None:
        return value
    if len(value) > MAX_GLOBS:
        raise _invalid(f"at most {MAX_GLOBS} platforms")
    for platform in value:
        if not _PLATFORM_RE.match(platform):
            raise _invalid(f"{platform[:100]!r}: a platform is os/architecture[/variant],"
                           " such as linux/amd64 or linux/arm64/v8")
    return list(dict.fromkeys(value))


def _name_globs(value: list[str] | None) -> list[str] | None:
    if value is None:
        return value
    if len(value) > MAX_GLOBS:
        raise _invalid(f"at most {MAX_GLOBS} name globs")
    for glob in value:
        error = _glob_error(glob, _NAME_CHAR, "repository name")
        if error:
            raise _invalid(error)
    return value


def _repository_name(value: str) -> str:
    # Components of the resource-name grammar; slashes come with pull-through
    # repositories, named `<distribution>/<upstream name>`.
    if not (len(value) <= MAX_NAME_LENGTH and value.isprintable()
            and all(is_resource_name(part) for part in value.split("/"))):
        raise _invalid("must be 1-255 characters: letters, digits, '.', '_' or '-', each"
                       " '/'-separated part starting with a letter or digit")
    return value


def _base_path(value: str) -> str:
    # Empty only for a pull-through distribution (the distributions API says so).
    return value if value == "" else _repository_path(value)


def _text_error(value: Any) -> str | None:
    """Why a string somewhere in `value` cannot be stored, or None."""
    if isinstance(value, str):
        if "\x00" in value:
            return "must not contain NUL characters"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "must be valid Unicode (a lone surrogate is not)"
    elif isinstance(value, list):
        return next(filter(None, map(_text_error, value)), None)
    return None


def _documented(**schema: Any) -> Any:
    """What the OpenAPI document says of a string; the validators above decide."""
    return Field(json_schema_extra=schema)


Timestamp = Annotated[datetime, AfterValidator(_as_utc)]
ResourceName = Annotated[str, AfterValidator(_resource_name), _documented(
    pattern=RESOURCE_NAME_RE.pattern, maxLength=MAX_NAME_LENGTH)]
RepositoryPath = Annotated[str, AfterValidator(_repository_path), _documented(
    pattern=NAME_RE.pattern, maxLength=MAX_NAME_LENGTH)]
HttpUrl = Annotated[str, AfterValidator(_http_url), _documented(
    pattern=r"^https?://[^\s/?#@]+(/[^\s]*)?$")]
PemText = Annotated[str, AfterValidator(_pem_certificates)]
# A glob, a `re:` regular expression, or (include only) a digest: `lazyreg.oci.tagfilter`.
TagPattern = Annotated[str, _documented(maxLength=MAX_GLOB_LENGTH)]
IncludeTags = Annotated[list[TagPattern] | None, AfterValidator(_include_tags)]
ExcludeTags = Annotated[list[TagPattern] | None, AfterValidator(_exclude_tags)]
Platforms = Annotated[list[str] | None, AfterValidator(_platforms)]
Prefetch = Literal["none", "platform", "all"]
NameGlob = Annotated[str, _documented(pattern=r"^([a-z0-9._/*?-]|\[!?\]?[^\]]*\])+$",
                                      maxLength=MAX_GLOB_LENGTH)]
NameGlobs = Annotated[list[NameGlob] | None, AfterValidator(_name_globs)]
RepositoryName = Annotated[str, AfterValidator(_repository_name), _documented(
    pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$",
    maxLength=MAX_NAME_LENGTH)]
BasePath = Annotated[str, AfterValidator(_base_path), _documented(
    pattern=f"^$|{NAME_RE.pattern}", maxLength=MAX_NAME_LENGTH)]
MAX_TTL = 30 * 86400


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        # JSON allows "\u0000" and lone surrogates; neither survives a trip through
        # the database (PostgreSQL refuses NUL, UTF-8 has no surrogates).
        error = _text_error(value)
        if error:
            raise _invalid(error)
        return value


class Counts(BaseModel):
    tags: int = 0
    manifests: int = 0
    blobs: int = 0


# --- remotes ---------------------------------------------------------------


class RemoteIn(Input):
    name: ResourceName
    url: HttpUrl = Field(description="Base URL of the upstream registry")
    upstream_name: RepositoryPath | None = Field(
        None, description="Repository name on the upstream; needed to sync, not for a remote"
        " that only serves pull-through distributions (they take it from the request)")
    policy: Policy = "on_demand"
    include_tags: IncludeTags = Field(
        None, description="Shell-style globs, 're:' regular expressions (RE2, whole tag) and"
        " digests to pin (even untagged); null means all tags")
    exclude_tags: ExcludeTags = Field(
        None, description="Shell-style globs and 're:' regular expressions")
    platforms: Platforms = Field(
        None, description="os/architecture[/variant] whose index children a sync fetches;"
        " the others are fetched on demand. Null or empty: all")
    prefetch: Prefetch = Field(
        "none", description="On the first GET of an image manifest, start its layers'"
        " downloads in the background: 'platform' for an image manifest, 'all' also for"
        " every child of an index")
    username: str | None = Field(None, max_length=MAX_CREDENTIAL_LENGTH)
    password: str | None = Field(None, max_length=MAX_CREDENTIAL_LENGTH,
                                 description="Write-only: stored encrypted, never returned")
    tls_verify: bool = True
    ca_cert: PemText | None = Field(None, description="PEM CA certificates to trust")
    proxy_url: HttpUrl | None = Field(None, description="Its user:password is stored"
                                      " encrypted and never returned")
    download_concurrency: int = Field(8, ge=1, le=64)
    allow_private_redirects: bool = Field(
        False, description="Follow the upstream's redirects and token realms to loopback,"
        " unspecified, private (RFC 1918, 100.64.0.0/10, fc00::/7), link-local and cloud"
        " metadata addresses even when the remote's own address is in none of those"
        " classes")
    include_referrers: bool = Field(
        False, description="Also mirror the referrers (signatures, SBOMs, attestations)"
                           " of every synced manifest")
    max_tags: int = Field(100_000, ge=1, le=10_000_000,
                          description="A sync of an upstream listing more tags fails")
    tag_ttl: int = Field(300, ge=0, le=MAX_TTL, description="Pull-through: seconds a tag is"
                         " trusted before a HEAD re-checks it upstream (0: every request)")
    negative_ttl: int = Field(30, ge=0, le=MAX_TTL, description="Pull-through: seconds an"
                              " upstream 404 is remembered (0: not at all)")
    include_names: NameGlobs = Field(None, description="Pull-through: globs on the upstream"
                                     " repository names that may be pulled; null means all")
    exclude_names: NameGlobs = Field(None, description="Pull-through: globs on upstream"
                                     " repository names that may not be pulled")


class RemoteOut(BaseModel):
    name: str
    url: str
    upstream_name: str | None
    policy: Policy
    include_tags: list[str] | None
    exclude_tags: list[str] | None
    platforms: list[str] | None
    prefetch: Prefetch
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
    tag_ttl: int
    negative_ttl: int
    include_names: list[str] | None
    exclude_names: list[str] | None
    created: Timestamp


# --- repositories ----------------------------------------------------------


class RepositoryIn(Input):
    name: RepositoryName
    description: str = Field("", max_length=MAX_DESCRIPTION_LENGTH)
    retain_versions: int | None = Field(
        None, ge=1, le=MAX_INT, description="Keep only the newest N versions (and those a"
        " distribution pins); null keeps all. A pull-through repository starts with 1")


class RepositoryOut(BaseModel):
    name: str
    description: str
    latest_version: int
    retain_versions: int | None
    created: Timestamp
    versions_href: str


class VersionOut(BaseModel):
    number: int
    created: Timestamp
    content_counts: Counts
    added: Counts
    removed: Counts


class SyncIn(Input):
    remote: str = Field(max_length=MAX_NAME_LENGTH, description="Name of the remote to sync from")
    mirror: bool = Field(False, description="Make the new version equal to the upstream")
    strict: bool = Field(False, description="Fail the whole sync on any broken tag, instead"
                                            " of skipping it with a warning")


class ScheduleIn(Input):
    remote: str = Field(max_length=MAX_NAME_LENGTH, description="Name of the remote to sync from")
    mirror: bool = Field(False, description="Make each new version equal to the upstream")
    sync_interval: int | None = Field(
        ge=1, le=MAX_INT, description="Seconds between the runs the server starts itself;"
        " null: no schedule")


class ScheduleOut(BaseModel):
    remote: str
    mirror: bool
    sync_interval: int
    next_run: Timestamp
    last_task: str | None = Field(description="The task of the last scheduled run")


class ExportIn(Input):
    output: str = Field(min_length=1, max_length=4096,
                        description="Absolute path on the server to write: a directory, or a"
                                    " file ending .tar or .tar.gz; it must not exist yet")
    since: int | None = Field(None, ge=0, description="Write only the manifests and blobs"
                              " that this older version lacks (an incremental export);"
                              " index.json still lists every tag")
    stored_only: bool = Field(False, description="Fail, listing them, if blobs are not stored,"
                              " instead of fetching them on demand")


class ImportIn(Input):
    input: str = Field(min_length=1, max_length=4096,
                       description="Absolute path on the server of an OCI image layout: a"
                                   " directory, a .tar or a .tar.gz")


# --- distributions ---------------------------------------------------------


class DistributionIn(Input):
    name: ResourceName
    base_path: BasePath = Field(description="The name clients pull: HOST/<base_path>; for a"
                                " pull-through distribution, the prefix of the upstream names"
                                " (empty: at the root, as the docker daemon's registry-mirrors"
                                " asks)")
    repository: str | None = Field(None, max_length=MAX_NAME_LENGTH,
                                   description="The repository to serve (not with pull_through)")
    repository_version: int | None = Field(
        None, ge=0, le=MAX_INT,
        description="Pin this version number; null serves the latest version")
    private: bool = False
    readers: list[str] = Field(default_factory=list, max_length=1000,
                               description="Users who may pull it when it is private")
    anonymous_pull_through: bool = Field(
        True, description="Pull-through: may anonymous clients make it fetch new content")
    pull_through: bool = Field(False, description="Serve every repository of the remote's"
                               " upstream under base_path, each fetched on its first pull")
    remote: str | None = Field(None, max_length=MAX_NAME_LENGTH,
                               description="Pull-through: the remote whose url is the upstream")


class DistributionOut(BaseModel):
    name: str
    base_path: str
    repository: str
    repository_version: int | None
    private: bool
    readers: list[str]
    anonymous_pull_through: bool
    pull_through: bool
    remote: str | None
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
    id: str = Field(description="What `DELETE tokens/<id>/` revokes it by")
    expires: Timestamp


class TokenInfo(BaseModel):
    """A live token (never its secret)."""

    id: str
    username: str
    kind: Literal["api", "refresh"] = Field(
        description="api: for the management API; refresh: from the token server's"
        " access_type=offline")
    parent: str | None = Field(description="The token it was minted with, if any:"
                               " revoking that one revokes this one")
    created: Timestamp
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


class CacheStatus(BaseModel):
    """Stored bytes against the bound: what may be evicted and what is always kept."""

    max_bytes: int | None = Field(description="The bound (max_cache_bytes); null: none")
    evictable_bytes: int = Field(description="Stored layers that can be fetched again")
    evictable_count: int
    kept_bytes: int = Field(description="Never evicted: configs, manifests, blobs of"
                            " immediate repositories, blobs no remote can give again")
    kept_count: int
    evicting: bool
    evicted_blobs: int = Field(description="Evicted by this server process since it started")
    evicted_bytes: int
    last_eviction: Timestamp | None


class StatusOut(BaseModel):
    version: str
    database: Literal["sqlite", "postgresql"]
    storage: StorageStatus
    artifacts: ArtifactSummary
    cache: CacheStatus
    counts: StatusCounts


class OrphanCleanupIn(Input):
    protection_time: int | None = Field(
        None, ge=0, le=MAX_INT, description="Seconds: content created, and artifacts stored or"
        " used, more recently than this stay (default: the server's orphan_protection_time,"
        " one hour), so that a sync in flight keeps its content")


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
