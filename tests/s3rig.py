"""The real S3 server of the tests (../shared/s3: Swift with its S3 API), once per session.

`start_s3` runs `s3-server start DIR`; `S3Server` gives each test its own
bucket (`new_bucket`), the settings that point lazyreg at it (`env`), and what
a test checks in it (`keys`, `uploads`), through botocore's own client (real
SigV4 requests, as lazyreg's). Swapping the server is a change here only.

`LAZYREG_S3_ENDPOINT=http://127.0.0.1:PORT` uses a rig already running (for a
quick loop while developing) instead of starting one.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.config import Config
from botocore.session import get_session

from tests.rig import SHARED, run

S3_SERVER = SHARED / "s3" / "s3-server"
ACCESS_KEY, SECRET_KEY, REGION = "test:tester", "testing", "us-east-1"


@dataclass
class S3Server:
    endpoint: str
    dir: Path | None  # None: a rig this session did not start
    _client: Any = field(default=None, repr=False)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = get_session().create_client(
                "s3", endpoint_url=self.endpoint, region_name=REGION,
                aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2},
                              request_checksum_calculation="when_required",
                              response_checksum_validation="when_required"))
        return self._client

    def new_bucket(self) -> str:
        name = "t-" + uuid.uuid4().hex[:16]
        self.client.create_bucket(Bucket=name)
        return name

    def env(self, bucket: str, prefix: str = "blobs", **extra: str) -> dict[str, str]:
        """LAZYREG_* variables for a server storing in `bucket`."""
        return {"LAZYREG_STORAGE_URL": f"s3://{bucket}/{prefix}",
                "LAZYREG_S3_ENDPOINT_URL": self.endpoint, "LAZYREG_S3_REGION": REGION,
                "LAZYREG_S3_ACCESS_KEY_ID": ACCESS_KEY,
                "LAZYREG_S3_SECRET_ACCESS_KEY": SECRET_KEY,
                "LAZYREG_S3_ADDRESSING_STYLE": "path", **extra}

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        found: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                          Prefix=prefix):
            found += [o["Key"] for o in page.get("Contents", [])]
        return sorted(found)

    def uploads(self, bucket: str) -> list[str]:
        """The keys of the multipart uploads in progress in `bucket`."""
        answer = self.client.list_multipart_uploads(Bucket=bucket)
        return sorted(u["Key"] for u in answer.get("Uploads", []))

    def halt(self) -> None:
        """Stop the server (its data stays): `resume` starts it again."""
        assert self.dir is not None, "a rig this session did not start"
        run([str(S3_SERVER), "stop", str(self.dir)], timeout=60)

    def resume(self) -> None:
        assert self.dir is not None
        run([str(S3_SERVER), "start", str(self.dir)], timeout=120)

    def stop(self) -> None:
        if self.dir is not None:
            subprocess.run([str(S3_SERVER), "stop", str(self.dir)], capture_output=True,
                           timeout=60)


def start_s3(workdir: Path) -> S3Server:
    existing = os.environ.get("LAZYREG_S3_ENDPOINT")
    if existing:
        return S3Server(existing, None)
    proc = run([str(S3_SERVER), "start", str(workdir)], timeout=180)
    endpoint = proc.stdout.strip().splitlines()[-1]
    return S3Server(endpoint, workdir)
