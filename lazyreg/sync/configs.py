"""Image config blobs: small metadata that a lazy sync stores with the manifests.

`fetch_config` reads one whole (at most the size its descriptor says, itself at
most CONFIG_LIMIT), verifies size and digest, and puts it in storage; an
upstream that sends other bytes raises DigestMismatch and stores nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from lazyreg.oci.digest import matches
from lazyreg.oci.manifest import Descriptor
from lazyreg.storage.base import BlobStore
from lazyreg.sync.record import FetchedManifest
from lazyreg.upstream.client import CONFIG_LIMIT, UpstreamClient
from lazyreg.upstream.errors import DigestMismatch


def configs_of(manifests: Iterable[FetchedManifest]) -> dict[str, Descriptor]:
    """The config blobs the manifests name, by digest; larger ones are left to the lazy path."""
    return {m.parsed.config.digest: m.parsed.config for m in manifests
            if m.parsed.config and m.parsed.config.size <= CONFIG_LIMIT}


async def fetch_config(client: UpstreamClient, name: str, config: Descriptor,
                       store: BlobStore) -> int:
    """Fetch, verify and store one config blob of upstream repository `name`; its size."""
    data = await client.get_blob_bytes(name, config.digest, max_size=config.size)
    if len(data) != config.size or not matches(data, config.digest):
        raise DigestMismatch(f"config blob {config.digest} of {name}: the upstream"
                             f" sent {len(data)} bytes that do not hash to it")
    await store.put(config.digest, data)
    return len(data)
