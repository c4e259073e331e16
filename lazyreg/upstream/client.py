"""An upstream registry, spoken to with aiohttp.

One `UpstreamClient` per remote: it owns that remote's token cache and a
semaphore that bounds its concurrent requests. The aiohttp session is shared
and owned by the application.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urljoin

import aiohttp

from lazyreg.oci.mediatypes import MANIFEST_ACCEPT
from lazyreg.upstream.auth import TokenCache, basic_header, parse_www_authenticate
from lazyreg.upstream.errors import (
    AuthError,
    InvalidResponse,
    NotFound,
    TooManyRequests,
    Unavailable,
    UpstreamError,
)
from lazyreg.upstream.observer import UNOBSERVED, UpstreamObserver, request_kind

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RemoteConfig:
    url: str
    username: str | None = None
    password: str | None = None
    tls_verify: bool = True
    ca_cert: str | None = None  # PEM text
    proxy_url: str | None = None
    concurrency: int = 8
    retries: int = 4
    backoff: float = 0.5  # seconds before the first retry; doubles each time


@dataclass(frozen=True)
class ManifestInfo:
    digest: str | None
    media_type: str
    size: int | None


def _ssl_context(config: RemoteConfig) -> ssl.SSLContext | bool:
    if not config.url.startswith("https"):
        return True
    if not config.tls_verify:
        return False
    if config.ca_cert:
        ctx = ssl.create_default_context()
        ctx.load_verify_locations(cadata=config.ca_cert)
        return ctx
    return True


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date; fall back to our own backoff


def pull_scope(name: str) -> str:
    return f"repository:{name}:pull"


class UpstreamClient:
    def __init__(self, session: aiohttp.ClientSession, config: RemoteConfig,
                 tokens: TokenCache | None = None,
                 observer: UpstreamObserver = UNOBSERVED) -> None:
        self.session = session
        self.observer = observer
        self.config = config
        self.base = config.url.rstrip("/") + "/"
        self.tokens = tokens or TokenCache()
        self.semaphore = asyncio.Semaphore(max(1, config.concurrency))
        self._ssl = _ssl_context(config)

    # ------------------------------------------------------------------ plumbing

    def _auth_header(self, scope: str | None) -> str | None:
        if self.tokens.scheme == "bearer" and scope:
            token = self.tokens.get(scope)
            return f"Bearer {token}" if token else None
        if self.tokens.scheme == "basic" and self.config.username is not None:
            return basic_header(self.config.username, self.config.password or "")
        return None

    async def _fetch_token(self, params: Mapping[str, str], scope: str | None) -> None:
        realm = params.get("realm")
        if not realm:
            raise AuthError("bearer challenge without a realm")
        query = {}
        if params.get("service"):
            query["service"] = params["service"]
        wanted = scope or params.get("scope")
        if wanted:
            query["scope"] = wanted
        headers = {}
        if self.config.username is not None:
            headers["Authorization"] = basic_header(self.config.username,
                                                    self.config.password or "")
            query["account"] = self.config.username
        try:
            async with self.session.get(realm, params=query, headers=headers, ssl=self._ssl,
                                        proxy=self.config.proxy_url) as resp:
                self.observer.upstream_request("token", "GET", resp.status)
                if resp.status in (401, 403):
                    raise AuthError(
                        f"token server {realm} refused the credentials (HTTP {resp.status}):"
                        " wrong username or password?", status=resp.status)
                if resp.status != 200:
                    raise AuthError(f"token server {realm} answered HTTP {resp.status}",
                                    status=resp.status)
                body = await resp.json(content_type=None)
        except aiohttp.ClientError as exc:
            self.observer.upstream_request("token", "GET", None)
            raise Unavailable(f"token server {realm} unreachable: {exc}") from exc
        token = body.get("token") or body.get("access_token")
        if not isinstance(token, str):
            raise AuthError(f"token server {realm} sent no token")
        expires_in = float(body.get("expires_in") or 60)
        self.tokens.put(wanted or "", token, expires_in)

    async def _answer_challenge(self, resp: aiohttp.ClientResponse, scope: str | None,
                                had_auth: bool) -> None:
        """Prepare credentials for a retry after a 401, or raise AuthError."""
        challenge = parse_www_authenticate(resp.headers.get("WWW-Authenticate", ""))
        if challenge is None:
            raise AuthError(f"upstream answered 401 without a challenge ({resp.url})")
        if challenge.scheme == "basic":
            if self.config.username is None:
                raise AuthError("upstream requires credentials; the remote has none")
            if had_auth and self.tokens.scheme == "basic":
                raise AuthError("upstream refused the credentials: wrong username or password")
            self.tokens.scheme = "basic"
        elif challenge.scheme == "bearer":
            self.tokens.scheme = "bearer"
            self.tokens.drop(scope or "")
            await self._fetch_token(challenge.params, scope)
        else:
            raise AuthError(f"unsupported auth scheme {challenge.scheme!r}")

    async def _backoff(self, attempt: int, retry_after: float | None) -> None:
        if retry_after is not None:
            delay = retry_after
        else:
            delay = self.config.backoff * (2 ** attempt)
            delay += random.uniform(0, delay / 2)  # jitter: do not retry in lockstep
        await asyncio.sleep(delay)

    async def send(self, method: str, path: str, *, scope: str | None,
                   headers: Mapping[str, str] | None = None,
                   ok: tuple[int, ...] = (200,)) -> aiohttp.ClientResponse:
        """Send with auth and retries; return an unread response whose status is in `ok`.

        The caller must release the response (use it as a context manager).
        """
        url = urljoin(self.base, path.lstrip("/"))
        kind = request_kind(path)
        auth_tries = 0
        attempt = 0
        while True:
            req_headers = dict(headers or {})
            auth = self._auth_header(scope)
            if auth:
                req_headers["Authorization"] = auth
            try:
                resp = await self.session.request(method, url, headers=req_headers,
                                                  ssl=self._ssl, proxy=self.config.proxy_url)
            except (TimeoutError, aiohttp.ClientConnectionError) as exc:
                self.observer.upstream_request(kind, method, None)
                if attempt >= self.config.retries:
                    raise Unavailable(f"{method} {url}: {exc or type(exc).__name__}") from exc
                log.info("upstream %s %s failed (%s); retrying", method, url, exc)
                await self._backoff(attempt, None)
                attempt += 1
                continue
            except aiohttp.ClientError as exc:
                self.observer.upstream_request(kind, method, None)
                raise Unavailable(f"{method} {url}: {exc}") from exc

            self.observer.upstream_request(kind, method, resp.status)
            if resp.status in ok:
                return resp
            resp.release()
            if resp.status == 401 and auth_tries < 2:
                auth_tries += 1
                await self._answer_challenge(resp, scope, had_auth=auth is not None)
                continue
            if resp.status in (401, 403):
                raise AuthError(f"upstream denied {method} {path} (HTTP {resp.status})",
                                status=resp.status)
            if resp.status == 404:
                raise NotFound(f"{method} {path}: not found upstream", status=404)
            if resp.status in RETRY_STATUSES:
                if attempt >= self.config.retries:
                    cls = TooManyRequests if resp.status == 429 else Unavailable
                    raise cls(f"{method} {url}: HTTP {resp.status} after {attempt + 1} tries",
                              status=resp.status)
                await self._backoff(attempt, _retry_after(resp.headers))
                attempt += 1
                continue
            raise InvalidResponse(f"{method} {url}: unexpected HTTP {resp.status}",
                                  status=resp.status)

    # ------------------------------------------------------------------ registry API

    async def ping(self) -> None:
        """`GET /v2/`: reachable, speaks the registry API, and credentials work."""
        async with self.semaphore:
            resp = await self.send("GET", "/v2/", scope=None)
            resp.release()

    async def list_tags(self, name: str, page_size: int = 1000) -> list[str]:
        tags: list[str] = []
        path: str | None = f"/v2/{name}/tags/list?n={page_size}"
        while path:
            async with self.semaphore:
                resp = await self.send("GET", path, scope=pull_scope(name))
                async with resp:
                    try:
                        body = await resp.json(content_type=None)
                    except ValueError as exc:
                        raise InvalidResponse(f"tag list of {name} is not JSON") from exc
                    link = resp.links.get("next")
            page = body.get("tags") if isinstance(body, dict) else None
            if page is None:
                page = []
            if not isinstance(page, list):
                raise InvalidResponse(f"tag list of {name} has no 'tags' array")
            tags.extend(str(t) for t in page)
            path = None
            if link and link.get("url"):
                nxt = str(link["url"])
                path = nxt if nxt.startswith("/") else str(aiohttp.client.URL(nxt).path_qs)
        return tags

    async def head_manifest(self, name: str, reference: str) -> ManifestInfo:
        async with self.semaphore:
            resp = await self.send("HEAD", f"/v2/{name}/manifests/{reference}",
                                   scope=pull_scope(name), headers={"Accept": MANIFEST_ACCEPT})
            resp.release()
        length = resp.headers.get("Content-Length")
        return ManifestInfo(
            digest=resp.headers.get("Docker-Content-Digest"),
            media_type=resp.headers.get("Content-Type", "").split(";")[0].strip(),
            size=int(length) if length and length.isdigit() else None,
        )

    async def get_manifest(self, name: str, reference: str,
                           max_size: int = 4 * 1024 * 1024) -> tuple[bytes, str]:
        """The manifest's exact bytes and the Content-Type the upstream gave it."""
        async with self.semaphore:
            resp = await self.send("GET", f"/v2/{name}/manifests/{reference}",
                                   scope=pull_scope(name), headers={"Accept": MANIFEST_ACCEPT})
            async with resp:
                data = await resp.content.read(max_size + 1)
                if len(data) > max_size:
                    raise InvalidResponse(f"manifest {name}@{reference} exceeds {max_size} bytes")
                media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        return data, media_type

    async def get_blob_bytes(self, name: str, digest: str) -> bytes:
        async with self.open_blob(name, digest) as resp:
            return await resp.read()

    @asynccontextmanager
    async def open_blob(self, name: str, digest: str, offset: int = 0
                        ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A blob response, positioned at `offset` (206 when the upstream honours Range).

        The caller checks `resp.status`: 200 means the body starts at byte 0
        whatever was asked.
        """
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        async with self.semaphore:
            resp = await self.send("GET", f"/v2/{name}/blobs/{digest}", scope=pull_scope(name),
                                   headers=headers, ok=(200, 206))
            async with resp:
                try:
                    yield resp
                finally:  # once per response: what arrived, read or not
                    self.observer.upstream_blob_bytes(resp.content.total_bytes)


__all__ = ["ManifestInfo", "RemoteConfig", "UpstreamClient", "UpstreamError"]
