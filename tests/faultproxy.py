"""Small proxies for what the rig's proxy cannot do: answer 429 with `Retry-After`, and
hold chosen requests until the test lets them go.

Everything else (cuts, corruption, throttling) comes from `upstream faults`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

import aiohttp
from aiohttp import web


class RetryAfterProxy:
    def __init__(self, target: str, fail_first: int, status: int = 429,
                 retry_after: str | None = "1", match: str = "/blobs/") -> None:
        self.target = target.rstrip("/")
        self.fail_first, self.status, self.retry_after = fail_first, status, retry_after
        self.match = match
        self.seen: list[tuple[float, str, str, int]] = []  # (time, method, path, status)
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        matched = self.match in request.path and request.method == "GET"
        failed = sum(1 for _, _, p, s in self.seen if s == self.status and self.match in p)
        if matched and failed < self.fail_first:
            self.seen.append((time.monotonic(), request.method, request.path, self.status))
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return web.json_response({"errors": [{"code": "TOOMANYREQUESTS",
                                                  "message": "injected"}]},
                                     status=self.status, headers=headers)
        resp = await forward(self.target, request)
        self.seen.append((time.monotonic(), request.method, request.path, resp.status))
        return resp


async def forward(target: str, request: web.Request) -> web.StreamResponse:
    """Relay `request` to `target` and stream its answer back."""
    headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
    async with aiohttp.ClientSession(auto_decompress=False) as session, session.request(
            request.method, target + request.path_qs, headers=headers,
            allow_redirects=False) as upstream:
        resp = web.StreamResponse(status=upstream.status, headers={
            k: v for k, v in upstream.headers.items()
            if k.lower() not in ("transfer-encoding", "connection")})
        await resp.prepare(request)
        async for chunk in upstream.content.iter_chunked(1 << 16):
            await resp.write(chunk)
        await resp.write_eof()
        return resp


class GateProxy:
    """Relays everything, but holds the GETs of chosen blobs until `release()`: a way to
    keep a sync running at a known point."""

    def __init__(self, target: str, hold: set[str]) -> None:
        self.target = target.rstrip("/")
        self.hold = hold
        self.url = ""
        self.holding = threading.Event()  # a held request is waiting
        self.released = threading.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET" and any(request.path.endswith(d) for d in self.hold):
            self.holding.set()
            await asyncio.to_thread(self.released.wait, 120)
        return await forward(self.target, request)

    def release(self) -> None:
        self.released.set()


P = TypeVar("P", RetryAfterProxy, GateProxy)


@contextmanager
def running(proxy: P) -> Iterator[P]:
    """Run the proxy on a free loopback port in a thread of its own."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    runner_box: list[web.AppRunner] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", proxy.handle)
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        port = runner.addresses[0][1]
        proxy.url = f"http://127.0.0.1:{port}"
        runner_box.append(runner)
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield proxy
    finally:
        asyncio.run_coroutine_threadsafe(runner_box[0].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
