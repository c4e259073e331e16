"""A small registry that misbehaves on purpose, for the tests.

It serves what it is given like a registry would (tags/list with `n`/`last`
paging, manifests by tag or digest with `Docker-Content-Digest`, blobs of any
digest algorithm, the referrers API when asked to), and per test it can:

- send endless bodies (`endless_blobs`, `endless_tag_lists`);
- loop its `Link` headers (`link_loops`);
- lie in `Docker-Content-Digest` on HEAD (`head_lies`);
- drip bytes (`drip_blobs`: seconds between bytes);
- list tags it does not serve, such as invalid names (`extra_tags`);
- list millions of tags, generated page by page, never stored (`generated_tags`);
- redirect chosen paths anywhere (`redirects`: path -> Location).

`Internal` stands for a service on the private side that must never be reached
through the upstream, and `ForwardProxy` for an HTTP proxy, so that a remote can
have a public-looking URL (routed by the proxy to a loopback server) while
redirects to loopback addresses still reach real servers.

Every request is recorded as (method, raw path) in `requests`. It runs on a
free loopback port in a thread of its own (`running`), or on the caller's loop
(`app()` with aiohttp's TestServer).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from aiohttp import web

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

_PATH = re.compile(r"^/v2/(?P<name>.+?)/(?:(?P<tags>tags/list)|manifests/(?P<ref>[^/]+)"
                   r"|blobs/(?P<blob>[^/]+)|referrers/(?P<subject>[^/]+))$")


def digest(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:" + hashlib.new(algorithm, data).hexdigest()


def descriptor(media_type: str, data: bytes, algorithm: str = "sha256",
               **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest(data, algorithm), "size": len(data),
            **extra}


@dataclass
class Repo:
    tags: dict[str, str] = field(default_factory=dict)  # tag -> manifest digest
    manifests: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # digest -> body, type


@dataclass
class Hostile:
    repos: dict[str, Repo] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    referrers_api: bool = False  # answer /referrers/ (else 404, as distribution 2.8)
    # misbehaviours
    endless_blobs: set[str] = field(default_factory=set)
    drip_blobs: dict[str, float] = field(default_factory=dict)
    endless_tag_lists: set[str] = field(default_factory=set)
    link_loops: set[str] = field(default_factory=set)
    head_lies: dict[tuple[str, str], str] = field(default_factory=dict)
    extra_tags: dict[str, list[Any]] = field(default_factory=dict)
    generated_tags: dict[str, int] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    url: str = ""

    # ------------------------------------------------------------ content

    def repo(self, name: str) -> Repo:
        return self.repos.setdefault(name, Repo())

    def add_manifest(self, name: str, doc: dict[str, Any] | bytes, tag: str | None = None,
                     media_type: str | None = None) -> str:
        data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        if media_type is None:
            media_type = (json.loads(data).get("mediaType") if data.startswith(b"{") else None
                          ) or OCI_MANIFEST
        d = digest(data)
        self.repo(name).manifests[d] = (data, media_type)
        if tag is not None:
            self.repo(name).tags[tag] = d
        return d

    def add_blob(self, data: bytes, algorithm: str = "sha256") -> str:
        d = digest(data, algorithm)
        self.blobs[d] = data
        return d

    def add_image(self, name: str, tag: str | None, config: bytes, layers: list[bytes], *,
                  algorithm: str = "sha256", foreign: tuple[bytes, ...] = (),
                  subject: str | None = None, artifact_type: str | None = None,
                  config_size: int | None = None) -> str:
        """An OCI image; `foreign` layers are named (with `urls`) but not served."""
        self.add_blob(config, algorithm)
        doc: dict[str, Any] = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config, algorithm),
            "layers": [descriptor(OCI_LAYER, self._blob(layer, algorithm), algorithm)
                       for layer in layers]
            + [descriptor(FOREIGN_LAYER, f, urls=["https://example.invalid/layer"])
               for f in foreign]}
        if config_size is not None:
            doc["config"]["size"] = config_size
        if subject is not None:
            data, media_type = self.repo(name).manifests[subject]
            doc["subject"] = {"mediaType": media_type, "digest": subject, "size": len(data)}
        if artifact_type is not None:
            doc["artifactType"] = artifact_type
        return self.add_manifest(name, doc, tag)

    def _blob(self, data: bytes, algorithm: str) -> bytes:
        self.add_blob(data, algorithm)
        return data

    def add_index(self, name: str, tag: str | None, children: list[str]) -> str:
        entries = []
        for child in children:
            data, media_type = self.repo(name).manifests[child]
            entries.append({"mediaType": media_type, "digest": child, "size": len(data),
                            "platform": {"os": "linux", "architecture": "amd64"}})
        return self.add_manifest(name, {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                        "manifests": entries}, tag)

    def paths(self) -> list[str]:
        return [p for _, p in self.requests]

    # ------------------------------------------------------------ serving

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.raw_path))
        if request.path in self.redirects:
            return web.Response(status=302, headers={"Location": self.redirects[request.path]})
        if request.path == "/v2/":
            return web.json_response({})
        m = _PATH.match(request.path)
        if m is None or m["name"] not in self.repos:
            return _error(404, "NAME_UNKNOWN")
        name = m["name"]
        if m["tags"]:
            return await self._tags(request, name)
        if m["ref"]:
            return self._manifest(request, name, m["ref"])
        if m["blob"]:
            return await self._blob_response(request, m["blob"])
        return self._referrers(name, m["subject"])

    async def _tags(self, request: web.Request, name: str) -> web.StreamResponse:
        if name in self.endless_tag_lists:
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            await resp.prepare(request)
            await resp.write(b'{"name": "x", "tags": [')
            chunk = b'"t",' * 16384
            with suppress(ConnectionError, asyncio.CancelledError):
                while True:
                    await resp.write(chunk)
            return resp
        if name in self.link_loops:
            return web.json_response({"tags": ["a"]}, headers={
                "Link": f'</v2/{name}/tags/list?n=1000&last=a>; rel="next"'})
        n = min(int(request.query.get("n", "1000")), 10_000)
        last = request.query.get("last")
        count = self.generated_tags.get(name)
        if count is not None:
            start = int(last[1:]) + 1 if last else 0
            page = [f"t{i:07d}" for i in range(start, min(start + n, count))]
        else:
            everything = sorted(self.repos[name].tags) + list(self.extra_tags.get(name, []))
            start = everything.index(last) + 1 if last in everything else 0
            page = everything[start:start + n]
            count = len(everything)
        headers = {}
        if page and start + len(page) < count:
            headers["Link"] = f'</v2/{name}/tags/list?n={n}&last={page[-1]}>; rel="next"'
        return web.json_response({"name": name, "tags": page}, headers=headers)

    def _manifest(self, request: web.Request, name: str, ref: str) -> web.Response:
        repo = self.repos[name]
        d = repo.tags.get(ref, ref)
        if d not in repo.manifests:
            return _error(404, "MANIFEST_UNKNOWN")
        data, media_type = repo.manifests[d]
        headers = {"Docker-Content-Digest": d, "Content-Type": media_type}
        if request.method == "HEAD":
            headers["Docker-Content-Digest"] = self.head_lies.get((name, ref), d)
            headers["Content-Length"] = str(len(data))
            return web.Response(headers=headers)
        return web.Response(body=data, headers=headers)

    async def _blob_response(self, request: web.Request, d: str) -> web.StreamResponse:
        if d in self.endless_blobs:
            resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
            await resp.prepare(request)
            chunk = b"\0" * 65536
            with suppress(ConnectionError, asyncio.CancelledError):
                while True:
                    await resp.write(chunk)
            return resp
        data = self.blobs.get(d)
        if data is None:
            return _error(404, "BLOB_UNKNOWN")
        delay = self.drip_blobs.get(d)
        if delay is None:
            return web.Response(body=data, headers={"Content-Type": "application/octet-stream",
                                                    "Docker-Content-Digest": d})
        resp = web.StreamResponse(headers={"Content-Length": str(len(data)),
                                           "Content-Type": "application/octet-stream"})
        await resp.prepare(request)
        with suppress(ConnectionError, asyncio.CancelledError):
            for i in range(len(data)):
                await resp.write(data[i:i + 1])
                await asyncio.sleep(delay)
        return resp

    def _referrers(self, name: str, subject: str) -> web.Response:
        if not self.referrers_api:
            return _error(404, "NOT_FOUND")
        entries = []
        for d, (data, media_type) in self.repos[name].manifests.items():
            doc = json.loads(data)
            if isinstance(doc, dict) and (doc.get("subject") or {}).get("digest") == subject:
                entries.append({"mediaType": media_type, "digest": d, "size": len(data),
                                "artifactType": doc.get("artifactType")})
        return web.json_response({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                  "manifests": entries},
                                 content_type=OCI_INDEX)


@dataclass
class Internal:
    """A service that answers JSON to anyone who reaches it, and remembers who did."""

    hits: list[str] = field(default_factory=list)
    secret: bytes = b'{"admin": true, "token": "internal-secret-0451"}'
    url: str = ""

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            self.hits.append(request.path)
            return web.Response(body=self.secret, content_type="application/json")
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app


HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authorization", "te", "trailer",
                        "transfer-encoding", "upgrade", "content-length", "content-encoding",
                        "host"})


@dataclass
class ForwardProxy:
    """An HTTP forward proxy: `routes` maps a Host (`203.0.113.5:5000`) to the URL that
    serves it; any other host is connected to as named, as a real proxy would."""

    routes: dict[str, str] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)
    url: str = ""

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            import aiohttp
            host = request.headers.get("Host", request.host)  # with its port
            self.seen.append(host)
            base = self.routes.get(host, f"http://{_canonical(host)}")
            headers = {k: v for k, v in request.headers.items()
                       if k.lower() not in HOP_BY_HOP}
            async with aiohttp.ClientSession(auto_decompress=False) as session, \
                    session.request(request.method, base + request.rel_url.path_qs,
                                    headers=headers, data=await request.read() or None,
                                    allow_redirects=False) as resp:
                body = await resp.read()
                kept = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP}
                return web.Response(status=resp.status, body=body, headers=kept)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app


def _canonical(authority: str) -> str:
    """`2130706433:80` as `127.0.0.1:80`: a resolver takes the legacy spellings, aiohttp not."""
    name, _, port = authority.rpartition(":")
    try:
        return f"{socket.inet_ntoa(socket.inet_aton(name))}:{port}"
    except OSError:
        return authority


class Served(Protocol):
    url: str

    def app(self) -> web.Application: ...


S = TypeVar("S", bound=Served)


def _error(status: int, code: str) -> web.Response:
    return web.json_response({"errors": [{"code": code, "message": code.lower()}]},
                             status=status)


@contextmanager
def running(hostile: S) -> Iterator[S]:
    """Serve `hostile` on a free loopback port from a thread with its own event loop."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    runners: list[web.AppRunner] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(hostile.app(), access_log=None, handler_cancellation=True)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        hostile.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        runners.append(runner)
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, name="hostile-upstream", daemon=True)
    thread.start()
    if not ready.wait(10):
        raise AssertionError("the hostile upstream did not start")
    try:
        yield hostile
    finally:
        asyncio.run_coroutine_threadsafe(runners[0].cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
