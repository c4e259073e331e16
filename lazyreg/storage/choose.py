"""The blob store the settings ask for: the filesystem under the data directory, or S3."""

from __future__ import annotations

from lazyreg.config import Settings
from lazyreg.storage.base import BlobStore
from lazyreg.storage.filesystem import FilesystemStore
from lazyreg.worker import WorkerId


async def open_store(settings: Settings, worker: WorkerId) -> BlobStore:
    """The store, checked: an object store's bucket must answer us (else `Misconfigured`,
    naming the setting), so that a bad setting stops the start-up, not every pull."""
    if not settings.storage_url:
        return FilesystemStore(settings.storage_dir, worker)
    from lazyreg.storage.s3 import S3Store  # aiobotocore only when it is used
    from lazyreg.storage.s3client import S3Location, S3Options

    secret = settings.s3_secret_access_key
    options = S3Options(endpoint_url=settings.s3_endpoint_url, region=settings.s3_region,
                        access_key_id=settings.s3_access_key_id,
                        secret_access_key=secret.get_secret_value() if secret else None,
                        addressing_style=settings.s3_addressing_style)
    return await S3Store.connect(S3Location.parse(settings.storage_url), options,
                                 settings.data_dir / "spool", worker)
