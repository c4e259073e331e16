"""The real S3 server of the tests (../shared/s3: Swift with its S3 API), once per session.

`start_s3` runs `s3-server start DIR`; `S3Server` gives each test its own
bucket (`new_bucket`), the settings that point lazyreg at it (`env`), and what
a test checks in it (`keys`, `uploads`), through botocore's own client (real
SigV4 requests, as lazyreg's). Swapping the server is a change here only.

`LAZYREG_S3_ENDPOINT=http://127.0.0.1:PORT` uses a rig already running (for a
quick loop while developing) instead of starting one.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.config import Config
from botocore.session import get_session

from tests.rig import SHARED, free_port, run

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
        """Start the halted server again (on new ports: `endpoint` changes)."""
        assert self.dir is not None
        proc = run([str(S3_SERVER), "start", str(self.dir)], timeout=180)
        self.endpoint = proc.stdout.strip().splitlines()[-1]
        self._client = None

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


class TcpRelay:
    """A loopback TCP relay to the S3 server, that a test can take down and bring back
    on the same port (the rig itself comes back on new ports after a restart)."""

    def __init__(self, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._target = target
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.up()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def up(self, target: str | None = None) -> None:
        if target:
            self._target = target
        self._call(self._start())

    def down(self) -> None:
        """Refuse new connections and cut the open ones, as a stopped server would."""
        self._call(self._stop())

    def close(self) -> None:
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port,
                                                  reuse_address=True)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = self._target.split("://", 1)[1].rsplit(":", 1)
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(1 << 16):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}
