"""Content-addressed blob storage."""

from lazyreg.storage.base import BlobStore, DigestMismatch, StagedBlob
from lazyreg.storage.filesystem import FilesystemStore

__all__ = ["BlobStore", "DigestMismatch", "FilesystemStore", "StagedBlob"]
