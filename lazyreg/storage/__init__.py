"""Content-addressed blob storage: one interface (`base`), filesystem and S3 backends (`s3`)."""

from lazyreg.storage.base import BlobReader, BlobStore, DigestMismatch, StagedBlob
from lazyreg.storage.filesystem import FilesystemStore
from lazyreg.storage.layout import UnsupportedDigest, blob_key, is_supported, split_digest

__all__ = ["BlobReader", "BlobStore", "DigestMismatch", "FilesystemStore", "StagedBlob",
           "UnsupportedDigest", "blob_key", "is_supported", "split_digest"]
