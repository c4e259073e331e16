"""Server settings: defaults < TOML file (--config) < environment (LAZYREG_*) < flags.

Every field is a key of the config file and a LAZYREG_<NAME> variable;
`lazyreg.configfile` does the layering, the file and the checks.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LAZYREG_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(5000, ge=0, le=65535)
    # Server processes on the one port: a number, or "auto" (one per core).
    workers: str = Field("1", pattern=r"^(auto|[1-9][0-9]{0,2})$")
    data_dir: Path = Path("./lazyreg-data")
    database_url: str | None = None
    # Bring an older database schema up to date at start; unset, such a server refuses to
    # start and says so (`lazyreg db upgrade` migrates explicitly). A new database is created.
    migrate: bool = False
    # Blob storage: unset, the filesystem under data_dir; `s3://bucket/prefix`, an
    # S3-compatible object store (README, "Object storage"). Keys left unset come from
    # the AWS environment variables and credential files.
    storage_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    # Stored blobs answered with a 307 to a presigned URL of the object store (GET, HEAD).
    storage_redirect: bool = False
    # Seconds between two sweeps of what dead workers left staged (uploads, spools).
    staging_sweep_interval: float = Field(300.0, gt=0)
    # Bytes of memory for the registry's cached lookups (manifests, what a version holds).
    lookup_cache_bytes: int = Field(64 * 1024 * 1024, ge=0)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Seconds a failed upstream source is skipped before it is tried again.
    source_cooldown: float = 300.0
    # Seconds a lazy download may take in all (it goes on when its clients leave).
    detached_fetch_timeout: float = 3600.0
    # Seconds a client reading a blob may stall before it is disconnected (see registry/send.py).
    send_timeout: float = Field(60.0, gt=0)
    # Seconds this process keeps answering from its in-memory caches after it last heard
    # from the database (the change feed, `lazyreg.db.changes`): the outage it rides out;
    # also the longest a DELETE waits for a process that stopped answering the feed.
    cache_grace: float = Field(40.0, ge=0, le=600)
    # Seconds a download lease is valid before another process may take it over.
    lease_ttl: float = 30.0
    # Retries of a failed upstream request, and the first backoff (doubling, with jitter).
    upstream_retries: int = Field(4, ge=0, le=20)
    upstream_backoff: float = Field(0.5, ge=0)
    # The stall rule: an upstream body slower than `min_rate` bytes/s for
    # `stall_timeout` seconds is abandoned (a drip-feeding upstream frees its slot).
    min_rate: float = Field(10 * 1024, ge=0)
    stall_timeout: float = Field(30.0, gt=0)
    # Seconds a small upstream body (manifest, tag list page, token, config) may take in all.
    upstream_read_timeout: float = Field(300.0, gt=0)
    # Disk space. Bytes of stored blobs that can be fetched again (layers no immediate
    # repository needs) beyond which the least recently used are evicted, down to
    # 90%; unset: no bound.
    max_cache_bytes: int | None = Field(None, ge=1)
    # Seconds between two writes of "last used" times (batched in memory in between),
    # and between two looks at the cache's bound.
    usage_flush_interval: float = Field(5.0, gt=0, le=3600)
    # Default protection time of orphan cleanup, in seconds: younger content stays.
    orphan_protection_time: float = Field(3600.0, ge=0)
    # Stored blobs or content rows deleted per transaction by cleanups and eviction.
    cleanup_batch_size: int = Field(200, ge=1, le=10_000)
    # Seconds a client waits for content a pull-through distribution fetches for the
    # first time; past it, 503 while the fetch goes on (a retry finds its result).
    pull_through_wait: float = Field(10.0, gt=0)
    log_level: str = "info"
    # One line per request and per task: "text" or "json" (one JSON object a line).
    log_format: Literal["text", "json"] = "text"
    # Count every HTTP request by route and status for /metrics (off only to measure its cost).
    request_metrics: bool = True
    # Access control (see "Access control" in the README). `off` only on loopback.
    auth: Literal["on", "off"] = "off"
    # The first start with auth on creates `admin` with this password (else a generated one).
    admin_password: SecretStr | None = None
    # Fernet key for remote secrets and the key JWTs are signed with are derived from it;
    # unset: a key file created 0600 in the data directory. Servers sharing a database
    # must share it.
    secret_key: SecretStr | None = Field(None, min_length=32)
    # How clients reach this server, for the token realm; unset: the request's own origin.
    # With auth off, its host is the one name besides loopback ones that requests may
    # carry in `Host` (DNS rebinding); with auth on, its origin counts as this server's.
    external_url: str | None = None
    # Seconds a request body may take to arrive once its head has (every body: the API,
    # the login form, the token server); a slower one is cut off with 408.
    body_timeout: float = Field(30.0, gt=0, le=600)
    # Seconds a stop (SIGTERM, SIGINT) waits for requests in progress before it cancels them.
    shutdown_timeout: float = Field(10.0, gt=0, le=600)
    # Failed logins: the longest wait (seconds) that failures from one client address,
    # or for one account, impose before the next password is checked.
    login_max_backoff: float = Field(60.0, gt=0, le=3600)
    # Seconds a registry token from /token is valid, and API tokens by default and at most.
    registry_token_ttl: int = Field(300, ge=10, le=3600)
    api_token_ttl: int = Field(86400, ge=60)
    api_token_max_ttl: int = Field(30 * 86400, ge=60)
    # A cluster (several servers on one database and shared storage; see "Running a
    # cluster" in the README). The secret every server of the cluster shares: set, this
    # server is a cluster node. Its peers read the downloads it leads from an internal
    # endpoint on its own listener, `cluster_listen` ("HOST:PORT"; port 0: a free one),
    # never on the public port; `cluster_url` is how its peers reach that listener
    # (default: http://HOST:PORT of `cluster_listen`, which then must name an address).
    cluster_secret: SecretStr | None = Field(None, min_length=16)
    cluster_listen: str | None = None
    cluster_url: str | None = Field(None, max_length=200)
    # Directories that exports may write into and imports read from (and below).
    # Unset: anywhere with auth off (a loopback-only server), nowhere with auth on.
    transfer_paths: list[Path] | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The config file is read by `lazyreg.configfile.load`, which knows its path.
        return init_settings, env_settings

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'lazyreg.db').resolve()}"

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "storage"

    @property
    def auth_enabled(self) -> bool:
        return self.auth == "on"

    @property
    def secret_key_file(self) -> Path:
        return self.data_dir / "secret.key"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# sysexits' EX_CONFIG: the exit status of a server that refuses to start (settings, or a
# database it must not start on). A supervisor does not restart on it
# (systemd: RestartPreventExitStatus=78).
EX_CONFIG = 78


class StartRefused(Exception):
    """Settings a server must not start with; the message says why and what to do."""


def bind_refusal(settings: Settings) -> str | None:
    """Why these settings must not start a server, or None."""
    if not settings.auth_enabled and not is_loopback(settings.host):
        return (f"refusing to listen on {settings.host} with --auth off: anyone who can reach"
                " it could administer the server and pull every distribution. Use --auth on"
                " (users and tokens) or a loopback --host such as 127.0.0.1")
    return None


def parse_listen(value: str) -> tuple[str, int]:
    """("HOST", PORT) of "HOST:PORT" ("[::1]:PORT" for IPv6); ValueError if it is not one."""
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"cluster_listen must be HOST:PORT, not {value!r}")
    return host, int(port)


def cluster_refusal(settings: Settings) -> str | None:
    """Why these cluster settings must not start a server, or None."""
    if settings.cluster_secret is None:
        if settings.cluster_listen or settings.cluster_url:
            return ("cluster_listen and cluster_url need cluster_secret (LAZYREG_CLUSTER_SECRET,"
                    " the secret every server of the cluster shares, 16 characters or more)")
        return None
    if not settings.cluster_listen:
        return ("cluster_secret needs cluster_listen (--cluster-listen HOST:PORT): the"
                " internal endpoint that peers read downloads from has its own listener")
    try:
        host, _ = parse_listen(settings.cluster_listen)
    except ValueError as exc:
        return str(exc)
    if settings.cluster_url is None and host in ("0.0.0.0", "::", ""):
        return (f"cluster_listen {settings.cluster_listen} names no address peers can reach:"
                " set cluster_url (--cluster-url http://THIS-NODE:PORT)")
    if settings.cluster_url is not None and not settings.cluster_url.startswith(
            ("http://", "https://")):
        return f"cluster_url must be an http:// or https:// URL, not {settings.cluster_url!r}"
    return None
