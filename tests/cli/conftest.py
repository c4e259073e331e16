"""A real lazyreg server (and a tiny fake upstream registry) on free ports, in a thread.

The CLI under test is synchronous and uses urllib, so the servers run on their
own event loop in a background thread, as a separate `lazyreg serve` would.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from lazyreg.app import create_app
from lazyreg.cli import main
from lazyreg.config import Settings

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _image(config: bytes, layers: list[bytes]) -> bytes:
    def descriptor(media_type: str, data: bytes) -> dict[str, object]:
        return {"mediaType": media_type, "digest": sha256(data), "size": len(data)}
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", d)
                   for d in layers],
    }).encode()


class FakeUpstream:
    """`library/app` with tags v1 (config 1, layer a) and v2 (config 2, layers a and b)."""

    def __init__(self) -> None:
        configs = [b'{"os":"linux","architecture":"amd64","n":1}',
                   b'{"os":"linux","architecture":"amd64","n":2}']
        layer_a, layer_b = b"a" * 1000, b"b" * 3000
        self.configs = {sha256(d): d for d in configs}
        self.blobs = {sha256(d): d for d in [*configs, layer_a, layer_b]}
        manifests = {"v1": _image(configs[0], [layer_a]),
                     "v2": _image(configs[1], [layer_a, layer_b])}
        self.tags = {tag: sha256(data) for tag, data in manifests.items()}
        self.manifests = {sha256(data): data for data in manifests.values()}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v2/", self.root)
        app.router.add_get("/v2/library/app/tags/list", self.tag_list)
        app.router.add_route("*", "/v2/library/app/manifests/{ref}", self.manifest)
        app.router.add_get("/v2/library/app/blobs/{digest}", self.blob)
        return app

    async def root(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def tag_list(self, request: web.Request) -> web.Response:
        return web.json_response({"name": "library/app", "tags": sorted(self.tags)})

    async def manifest(self, request: web.Request) -> web.Response:
        ref = request.match_info["ref"]
        digest = self.tags.get(ref, ref)
        if digest not in self.manifests:
            raise web.HTTPNotFound()
        headers = {"Docker-Content-Digest": digest, "Content-Type": OCI_MANIFEST}
        return web.Response(body=self.manifests[digest], headers=headers)

    async def blob(self, request: web.Request) -> web.Response:
        data = self.blobs.get(request.match_info["digest"])
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type="application/octet-stream")


class Servers:
    """lazyreg and the fake upstream on 127.0.0.1, free ports, one loop in one thread."""

    def __init__(self, data_dir: Path) -> None:
        self.settings = Settings(data_dir=data_dir, upstream_retries=0, upstream_backoff=0)
        self.upstream = FakeUpstream()
        self.url = self.upstream_url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="lazyreg-test-server")

    def __enter__(self) -> Servers:
        self._thread.start()
        self._ready.wait(30)
        if self._failure:
            raise self._failure
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    async def _start(self, app: web.Application) -> tuple[web.AppRunner, str]:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return runner, f"http://{host}:{port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        runners: list[web.AppRunner] = []
        try:
            try:
                runner, self.url = self._loop.run_until_complete(
                    self._start(create_app(self.settings)))
                runners.append(runner)
                runner, self.upstream_url = self._loop.run_until_complete(
                    self._start(self.upstream.app()))
                runners.append(runner)
            except BaseException as exc:
                self._failure = exc
                return
            finally:
                self._ready.set()
            self._loop.run_forever()
        finally:
            for runner in reversed(runners):
                self._loop.run_until_complete(runner.cleanup())
            self._loop.run_until_complete(self._loop.shutdown_default_executor())
            self._loop.close()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    with Servers(tmp_path) as running:
        yield running


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def table_row(out: str, first: str) -> list[str]:
    """The cells of the row whose first cell is `first`, in a table or a record."""
    for line in out.splitlines():
        if "│" in line:
            cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
        else:
            cells = line.split(None, 1)
        if cells and cells[0] == first:
            return [cell.strip() for cell in cells]
    raise AssertionError(f"no row {first!r} in:\n{out}")


class Runner:
    def __init__(self, server: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.server = server
        self.capsys = capsys

    def __call__(self, *args: str, server: str | None = None) -> Result:
        self.capsys.readouterr()
        code = main(["--server", server or self.server, *args])
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)


@pytest.fixture
def cli(servers: Servers, capsys: pytest.CaptureFixture[str]) -> Runner:
    """Run `lazyreg --server <the test server> ARGS...` in-process."""
    return Runner(servers.url, capsys)
