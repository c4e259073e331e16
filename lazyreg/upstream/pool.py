"""One `UpstreamClient` per remote, sharing the application's aiohttp session.

Keeping the client per remote keeps its token cache and its concurrency bound
across syncs and lazy fetches; a changed remote configuration gets a new client.
"""

from __future__ import annotations

import aiohttp

from lazyreg.upstream.client import RemoteConfig, UpstreamClient
from lazyreg.upstream.observer import UNOBSERVED, UpstreamObserver


class UpstreamPool:
    def __init__(self, session: aiohttp.ClientSession,
                 observer: UpstreamObserver = UNOBSERVED) -> None:
        self.session = session
        self.observer = observer  # told of every request the clients send
        self._clients: dict[int, UpstreamClient] = {}

    def client(self, remote_id: int, config: RemoteConfig) -> UpstreamClient:
        client = self._clients.get(remote_id)
        if client is None or client.config != config:
            client = UpstreamClient(self.session, config, observer=self.observer)
            self._clients[remote_id] = client
        return client

    def forget(self, remote_id: int) -> None:
        self._clients.pop(remote_id, None)
