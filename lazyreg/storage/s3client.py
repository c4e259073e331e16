"""How to reach an S3-compatible object store: the settings, the client, its errors.

- `S3Location` parses `--storage-url s3://bucket/prefix`.
- `S3Options` holds the other settings (`s3_endpoint_url`, `s3_region`,
  `s3_access_key_id` / `s3_secret_access_key`, `s3_addressing_style`); keys
  left unset come from the usual AWS environment variables and credential
  files (botocore's chain).
- `new_client` makes an aiobotocore client with bounded timeouts and
  retries, SigV4 (presigned URLs included), and no checksum trailers (not every
  S3-compatible store takes them; the blob's own digest is what we verify).
- `calling(op)` turns every failure of a call that is not an answer about
  the object (404) into `StorageUnavailable`: a store that is down, refuses
  our credentials or answers 5xx is the server's problem, for a 503 with
  Retry-After, never a bare 500.
- `Misconfigured` is a start-up check's one line, naming the setting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiobotocore.session import AioSession, get_session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from lazyreg.errors import StorageUnavailable
from lazyreg.storage.base import Misconfigured

CONNECT_TIMEOUT = 5.0  # seconds to connect to the object store
READ_TIMEOUT = 10.0  # seconds a read from the object store may stall (under the stall rule)
MAX_ATTEMPTS = 2  # botocore's attempts of one call (standard retry mode)
POOL = 64  # connections to the object store, at most


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # "" or "a/b/" (always ends with a slash)

    @classmethod
    def parse(cls, url: str) -> S3Location:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise Misconfigured(f"storage_url: expected s3://bucket/prefix, got {url!r}")
        prefix = parts.path.strip("/")
        return cls(parts.netloc, f"{prefix}/" if prefix else "")

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class S3Options:
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    addressing_style: str = "auto"  # auto | path | virtual


def new_client(options: S3Options, session: AioSession | None = None) -> Any:
    """An aiobotocore S3 client context (`async with ... as client`)."""
    config = Config(
        s3={"addressing_style": options.addressing_style},
        signature_version="s3v4",
        connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
        retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
        max_pool_connections=POOL,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return (session or get_session()).create_client(
        "s3", endpoint_url=options.endpoint_url, region_name=options.region,
        aws_access_key_id=options.access_key_id,
        aws_secret_access_key=options.secret_access_key, config=config)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def is_missing(exc: BaseException) -> bool:
    """An answer that the object (or upload) is not there."""
    return isinstance(exc, ClientError) and (
        http_status(exc) == 404 or error_code(exc) in ("NoSuchKey", "NoSuchUpload", "404"))


@contextlib.contextmanager
def calling(op: str) -> Iterator[None]:
    """Object store failures as `StorageUnavailable` (404 answers pass through)."""
    try:
        yield
    except ClientError as exc:
        if is_missing(exc):
            raise
        raise StorageUnavailable(f"object store: {op}: {error_code(exc) or http_status(exc)}"
                                 f" {exc}") from exc
    except (BotoCoreError, OSError, TimeoutError) as exc:
        if isinstance(exc, StorageUnavailable):
            raise
        raise StorageUnavailable(f"object store: {op}: {type(exc).__name__}: {exc}") from exc


async def check_bucket(client: Any, location: S3Location, options: S3Options) -> None:
    """Raise `Misconfigured`, naming the setting, unless the bucket answers us."""
    try:
        await client.head_bucket(Bucket=location.bucket)
    except ClientError as exc:
        status = http_status(exc)
        if status == 404:
            raise Misconfigured(f"storage_url: bucket {location.bucket!r} does not exist at"
                                f" {options.endpoint_url or 'AWS S3'}") from None
        if status in (401, 403) or error_code(exc) in ("SignatureDoesNotMatch",
                                                       "InvalidAccessKeyId"):
            raise Misconfigured(
                f"s3_access_key_id / s3_secret_access_key: the object store refused them for"
                f" bucket {location.bucket!r} ({error_code(exc) or status})") from None
        raise Misconfigured(f"storage_url: bucket {location.bucket!r}: {exc}") from None
    except BotoCoreError as exc:
        name = type(exc).__name__
        if "Credentials" in name:
            raise Misconfigured("s3_access_key_id / s3_secret_access_key: none given and none"
                                " found in the AWS environment or credential files") from None
        raise Misconfigured(f"s3_endpoint_url: {options.endpoint_url or 'AWS S3'} unreachable"
                            f" ({name})") from None
    except (OSError, TimeoutError) as exc:
        raise Misconfigured(f"s3_endpoint_url: {options.endpoint_url or 'AWS S3'} unreachable"
                            f" ({type(exc).__name__})") from None
