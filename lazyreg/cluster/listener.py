"""The internal listener: the endpoint peers read downloads from, on its own address.

Apart from the public port, so that it can be kept off the network clients
reach (a firewall rule, a Kubernetes Service that names only the public port)
rather than told apart by path at a proxy. Port 0 takes a free port, and
`cluster_url` then names it (when it is derived from `cluster_listen`).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from lazyreg.cluster.endpoint import Node, internal_app
from lazyreg.config import Settings, parse_listen
from lazyreg.fetch import Fetcher
from lazyreg.storage.base import BlobStore

IDLE_TIMEOUT = 15.0  # seconds a peer's idle keep-alive connection is kept


@dataclass
class InternalListener:
    runner: web.AppRunner
    url: str  # how peers reach it: `cluster_url`, or derived from the bound address

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_internal(settings: Settings, fetcher: Fetcher,
                         store: BlobStore) -> InternalListener:
    """Listen on `cluster_listen` (settings checked by `config.cluster_refusal`)."""
    assert settings.cluster_secret is not None and settings.cluster_listen is not None
    host, port = parse_listen(settings.cluster_listen)
    node = Node(fetcher, store, settings.cluster_secret.get_secret_value(),
                settings.send_timeout)
    runner = web.AppRunner(internal_app(node), access_log=None, handle_signals=False,
                           keepalive_timeout=IDLE_TIMEOUT)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
    except BaseException:
        await runner.cleanup()
        raise
    url = settings.cluster_url
    if url is None:
        url = f"http://[{host}]:{bound}" if ":" in host else f"http://{host}:{bound}"
    return InternalListener(runner, url.rstrip("/"))
