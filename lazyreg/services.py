"""The long-lived parts a request or a task works with, owned by the application."""

from __future__ import annotations

from dataclasses import dataclass, field

from lazyreg.auth.secrets import SecretBox
from lazyreg.config import Settings
from lazyreg.db.engine import Database
from lazyreg.db.models import Remote
from lazyreg.db.usage import UsageLog
from lazyreg.redact import with_userinfo
from lazyreg.storage.base import BlobStore
from lazyreg.upstream.client import RemoteConfig, UpstreamClient
from lazyreg.upstream.pool import UpstreamPool
from lazyreg.upstream.stall import StallRule
from lazyreg.worker import WorkerId


@dataclass
class Services:
    settings: Settings
    db: Database
    store: BlobStore
    upstreams: UpstreamPool
    secrets: SecretBox
    # This process, in leases, task rows and storage's staging.
    worker: WorkerId = field(default_factory=WorkerId.current)
    # Which stored blobs this process used lately, written in batches (`SpaceKeeper`).
    usage: UsageLog = field(default_factory=UsageLog)
    # Where the peers of a cluster reach this process (recorded in its leases); None:
    # not in a cluster.
    cluster_url: str | None = None

    @property
    def worker_id(self) -> str:
        """The worker as task rows record it."""
        return str(self.worker)

    def upstream_for(self, remote: Remote) -> UpstreamClient:
        return self.upstreams.client(remote.id,
                                     remote_config(remote, self.settings, self.secrets))


def remote_config(remote: Remote, settings: Settings, secrets: SecretBox) -> RemoteConfig:
    """How to reach the remote, its secrets decrypted (SecretUnavailable if they cannot be)."""
    password = None
    if remote.password_secret is not None:
        password = secrets.decrypt(remote.password_secret,
                                   f"the password of remote {remote.name!r}")
    proxy_url = remote.proxy_url
    if proxy_url and remote.proxy_secret is not None:
        userinfo = secrets.decrypt(remote.proxy_secret,
                                   f"the proxy credentials of remote {remote.name!r}")
        proxy_url = with_userinfo(proxy_url, userinfo)
    return RemoteConfig(
        url=remote.url,
        username=remote.username,
        password=password,
        tls_verify=remote.tls_verify,
        ca_cert=remote.ca_cert,
        proxy_url=proxy_url,
        allow_private_redirects=remote.allow_private_redirects,
        concurrency=remote.download_concurrency,
        retries=settings.upstream_retries,
        backoff=settings.upstream_backoff,
        stall=StallRule(min_rate=settings.min_rate, timeout=settings.stall_timeout),
        read_timeout=settings.upstream_read_timeout,
    )
