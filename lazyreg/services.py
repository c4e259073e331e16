"""The long-lived parts a request or a task works with, owned by the application."""

from __future__ import annotations

from dataclasses import dataclass, field

from lazyreg.config import Settings
from lazyreg.db.engine import Database
from lazyreg.db.models import Remote
from lazyreg.storage.base import BlobStore
from lazyreg.upstream.client import RemoteConfig, UpstreamClient
from lazyreg.upstream.pool import UpstreamPool
from lazyreg.worker import WorkerId


@dataclass
class Services:
    settings: Settings
    db: Database
    store: BlobStore
    upstreams: UpstreamPool
    # This process, in leases, task rows and storage's staging.
    worker: WorkerId = field(default_factory=WorkerId.current)

    @property
    def worker_id(self) -> str:
        """The worker as task rows record it."""
        return str(self.worker)

    def upstream_for(self, remote: Remote) -> UpstreamClient:
        return self.upstreams.client(remote.id, remote_config(remote, self.settings))


def remote_config(remote: Remote, settings: Settings) -> RemoteConfig:
    return RemoteConfig(
        url=remote.url,
        username=remote.username,
        password=remote.password,
        tls_verify=remote.tls_verify,
        ca_cert=remote.ca_cert,
        proxy_url=remote.proxy_url,
        concurrency=remote.download_concurrency,
        retries=settings.upstream_retries,
        backoff=settings.upstream_backoff,
    )
