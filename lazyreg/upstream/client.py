"""An upstream registry, spoken to with aiohttp.

One `UpstreamClient` per remote: it owns that remote's token cache and a
semaphore that bounds its concurrent requests. The aiohttp session is shared
and owned by the application.

Nothing an upstream sends is trusted to be small or quick: every body is read
under the stall rule (`stall.py`), small bodies whole with a byte cap and a time
limit (MANIFEST_LIMIT, CONFIG_LIMIT, TAG_PAGE_LIMIT, TOKEN_LIMIT), references
are checked against the grammar before they go into a URL, and tag-list paging
follows only `Link`s back to the same repository, never a page twice and at
most MAX_TAG_PAGES pages.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urljoin

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from lazyreg.oci.digest import is_valid_digest
from lazyreg.oci.manifest import ChildManifest, InvalidManifest, parse_manifest
from lazyreg.oci.mediatypes import MANIFEST_ACCEPT, OCI_INDEX
from lazyreg.oci.names import is_tag
from lazyreg.upstream import redirects
from lazyreg.upstream.auth import TokenCache, basic_header, parse_www_authenticate
from lazyreg.upstream.body import BodyReader
from lazyreg.upstream.errors import (
    AuthError,
    InvalidResponse,
    NotFound,
    RedirectRefused,
    TooManyRequests,
    Unavailable,
    UpstreamError,
)
from lazyreg.upstream.observer import UNOBSERVED, UpstreamObserver, request_kind
from lazyreg.upstream.stall import GuardedReader, StallRule, read_capped

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

MIB = 1024 * 1024
MANIFEST_LIMIT = 4 * MIB  # what distribution accepts
CONFIG_LIMIT = 4 * MIB
TAG_PAGE_LIMIT = 8 * MIB
TOKEN_LIMIT = 64 * 1024
MAX_TAG_PAGES = 10_000
MAX_REFERRER_PAGES = 10
# Statuses a registry without the referrers API (or not letting us use it) answers.
NO_REFERRERS_API = (400, 403, 404, 405, 501)


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
    # Follow redirects (and token realms) to loopback, private, link-local and metadata
    # addresses whatever the remote's own (lazyreg.upstream.redirects).
    allow_private_redirects: bool = False
    stall: StallRule = field(default_factory=StallRule)
    # Seconds a small body (manifest, tag page, token, config) may take to read in all.
    read_timeout: float = 300.0


@dataclass(frozen=True)
class ManifestInfo:
    digest: str | None
    media_type: str
    size: int | None


@dataclass(frozen=True)
class ManifestBody:
    data: bytes
    media_type: str
    digest: str | None  # the upstream's Docker-Content-Digest, unverified


@dataclass
class BlobResponse:
    """What `open_blob` yields: the body is a stall-guarded `read(n)`."""

    status: int
    headers: CIMultiDictProxy[str]
    content: GuardedReader


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


def _check_reference(reference: str) -> str:
    # A tag from an upstream's list goes into a URL path: "../../x" must never get there.
    if not (is_tag(reference) or is_valid_digest(reference)):
        raise InvalidResponse(f"invalid tag or digest {reference[:200]!r}")
    return reference


def _expires_in(value: object) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 60.0
    return min(seconds, 86400.0) if math.isfinite(seconds) and seconds > 0 else 60.0


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
        self._own: frozenset[redirects.AddressClass] | None = None

    async def _own_classes(self) -> frozenset[redirects.AddressClass]:
        """Where else this remote's redirects may go (resolved once, when first needed)."""
        if self._own is None:
            self._own = await redirects.own_classes(URL(self.base))
        return self._own

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
        try:
            realm_url = URL(realm)
        except ValueError:
            raise AuthError("bearer challenge with an invalid realm") from None
        redirects.check_scheme(realm_url, "the token realm")
        own = URL(self.base)
        if (self.config.username is not None and realm_url.scheme == "http"
                and realm_url.host != own.host):
            # Basic credentials over plain HTTP to another host could be read on the way.
            raise AuthError(f"refusing to send the remote's credentials to the token realm"
                            f" {realm_url.origin()} over plain HTTP: it is not the remote's"
                            " own host; the token server must use https")
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
            async with await self._request("GET", realm_url.update_query(query),
                                           headers) as resp:
                self.observer.upstream_request("token", "GET", resp.status)
                if resp.status in (401, 403):
                    raise AuthError(
                        f"token server {realm} refused the credentials (HTTP {resp.status}):"
                        " wrong username or password?", status=resp.status)
                if resp.status != 200:
                    raise AuthError(f"token server {realm} answered HTTP {resp.status}",
                                    status=resp.status)
                raw = await read_capped(resp.content, resp.headers, TOKEN_LIMIT,
                                        self.config.stall, self.config.read_timeout,
                                        f"token response of {realm}")
        except aiohttp.ClientError as exc:
            self.observer.upstream_request("token", "GET", None)
            raise Unavailable(f"token server {realm} unreachable: {exc}") from exc
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            body = None
        token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
        if not isinstance(token, str):
            raise AuthError(f"token server {realm} sent no token")
        self.tokens.put(wanted or "", token, _expires_in(body.get("expires_in")))

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

    async def _request(self, method: str, url: URL,
                       headers: Mapping[str, str]) -> aiohttp.ClientResponse:
        """One request, following redirects by the rules of `lazyreg.upstream.redirects`.

        Credentials go only to the origin they were meant for: a redirect to another
        origin drops the Authorization header.
        """
        own = URL(self.base)
        dest = redirects.Destination(url)
        if not redirects.same_origin(url, own):  # a token realm elsewhere
            dest = await redirects.destination(
                url, allow_private=self.config.allow_private_redirects,
                pin=self.config.proxy_url is None, own=await self._own_classes(),
                what="the token realm")
        current, sent = url, dict(headers)
        for _ in range(redirects.MAX_REDIRECTS + 1):
            if dest.host_header:
                sent["Host"] = dest.host_header
            resp = await self.session.request(
                method, dest.url, headers=sent, ssl=self._ssl, proxy=self.config.proxy_url,
                allow_redirects=False, server_hostname=dest.server_hostname)
            if resp.status not in REDIRECT_STATUSES:
                return resp
            location = resp.headers.get("Location", "")
            resp.release()
            try:
                target = current.join(URL(location))
            except ValueError:
                raise RedirectRefused("refused a redirect to an invalid URL") from None
            dest = await redirects.destination(
                target, allow_private=self.config.allow_private_redirects,
                pin=self.config.proxy_url is None, own=await self._own_classes())
            if not redirects.same_origin(target, current):
                sent = {k: v for k, v in sent.items()
                        if k.lower() not in ("authorization", "host")}
            else:
                sent.pop("Host", None)
            if resp.status == 303:
                method = "GET"
            current = target
        raise InvalidResponse(f"{method} {url}: more than {redirects.MAX_REDIRECTS} redirects")

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

        `path` is relative to the remote's URL, or an absolute URL already
        checked to point at it. The caller must release the response (use it as
        a context manager).
        """
        url = path if path.startswith(("http://", "https://")) else urljoin(
            self.base, path.lstrip("/"))
        kind = request_kind(path)
        auth_tries = 0
        attempt = 0
        while True:
            req_headers = dict(headers or {})
            auth = self._auth_header(scope)
            if auth:
                req_headers["Authorization"] = auth
            try:
                resp = await self._request(method, URL(url), req_headers)
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

    async def _get_small(self, path: str, *, scope: str, headers: Mapping[str, str],
                         cap: int, what: str, ok: tuple[int, ...] = (200,)
                         ) -> tuple[bytes, aiohttp.ClientResponse]:
        """GET a whole small body (capped, timed, stall-guarded); retried when cut."""
        attempt = 0
        while True:
            async with self.semaphore:
                resp = await self.send("GET", path, scope=scope, headers=headers, ok=ok)
                async with resp:
                    try:
                        data = await read_capped(resp.content, resp.headers, cap,
                                                 self.config.stall, self.config.read_timeout,
                                                 what)
                        return data, resp
                    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
                        if attempt >= self.config.retries:
                            raise Unavailable(f"{what}: {exc}") from exc
                        log.info("upstream %s cut (%s); retrying", what, exc)
            await self._backoff(attempt, None)
            attempt += 1

    def _next_page(self, resp: aiohttp.ClientResponse, expected_path: str,
                   what: str) -> str | None:
        """The `rel="next"` URL, if it points back at `expected_path` on the remote's host."""
        link = resp.links.get("next")
        if not link or not link.get("url"):
            return None
        nxt = URL(str(link["url"]))
        if not nxt.is_absolute():
            nxt = resp.url.join(nxt)
        base = URL(self.base)
        if (nxt.scheme, nxt.host, nxt.port) != (base.scheme, base.host, base.port):
            raise InvalidResponse(f"{what}: Link to another host refused: {str(nxt)[:200]}")
        if nxt.path != expected_path:
            raise InvalidResponse(f"{what}: Link to another path refused: {nxt.path[:200]}")
        return str(nxt)

    async def iter_tag_pages(self, name: str, page_size: int = 1000,
                             max_pages: int = MAX_TAG_PAGES) -> AsyncIterator[list[object]]:
        """The tag list of `name`, a page at a time (entries unchecked: the caller validates).

        Paging stops with InvalidResponse on a page or `last` seen twice (a loop)
        or past `max_pages` pages.
        """
        what = f"tag list of {name}"
        expected = URL(urljoin(self.base, f"v2/{name}/tags/list")).path
        url: str | None = f"/v2/{name}/tags/list?n={page_size}"
        seen_urls: set[str] = set()
        seen_last: set[str] = set()
        pages = 0
        while url:
            pages += 1
            if pages > max_pages:
                raise InvalidResponse(f"{what}: more than {max_pages} pages")
            data, resp = await self._get_small(url, scope=pull_scope(name), headers={},
                                               cap=TAG_PAGE_LIMIT, what=f"{what} page {pages}")
            try:
                body = json.loads(data)
            except (ValueError, RecursionError) as exc:
                raise InvalidResponse(f"{what} is not JSON") from exc
            page = body.get("tags") if isinstance(body, dict) else None
            if page is None:
                page = []
            if not isinstance(page, list):
                raise InvalidResponse(f"{what} has no 'tags' array")
            url = self._next_page(resp, expected, what)
            if url is not None:
                last = URL(url).query.get("last")
                if url in seen_urls or (last is not None and last in seen_last):
                    raise InvalidResponse(f"{what}: the Link header loops (page {pages}"
                                          f" links back to a page already read)")
                seen_urls.add(url)
                if last is not None:
                    seen_last.add(last)
            yield page

    async def list_tags(self, name: str, page_size: int = 1000,
                        max_tags: int = 100_000) -> list[str]:
        tags: list[str] = []
        async for page in self.iter_tag_pages(name, page_size):
            tags.extend(str(t) for t in page)
            if len(tags) > max_tags:
                raise InvalidResponse(f"tag list of {name} has more than {max_tags} tags")
        return tags

    async def head_manifest(self, name: str, reference: str) -> ManifestInfo:
        _check_reference(reference)
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
                           max_size: int = MANIFEST_LIMIT) -> ManifestBody:
        """The manifest's exact and whole bytes, its Content-Type and claimed digest."""
        _check_reference(reference)
        data, resp = await self._get_small(
            f"/v2/{name}/manifests/{reference}", scope=pull_scope(name),
            headers={"Accept": MANIFEST_ACCEPT}, cap=max_size,
            what=f"manifest {name}:{reference}")
        return ManifestBody(data, resp.headers.get("Content-Type", "").split(";")[0].strip(),
                            resp.headers.get("Docker-Content-Digest"))

    async def get_blob_bytes(self, name: str, digest: str,
                             max_size: int = CONFIG_LIMIT) -> bytes:
        """A small blob (an image config) whole; more than `max_size` bytes fails."""
        _check_reference(digest)
        data, _ = await self._get_small(f"/v2/{name}/blobs/{digest}", scope=pull_scope(name),
                                        headers={}, cap=max_size,
                                        what=f"blob {digest} of {name}")
        self.observer.upstream_blob_bytes(len(data))
        return data

    async def get_referrers(self, name: str, digest: str) -> list[ChildManifest] | None:
        """The manifests whose subject is `digest`, from the referrers API; None without one."""
        _check_reference(digest)
        what = f"referrers of {name}@{digest}"
        path = f"/v2/{name}/referrers/{digest}"
        expected = URL(urljoin(self.base, path.lstrip("/"))).path
        url: str | None = path
        seen: set[str] = set()
        out: list[ChildManifest] = []
        while url and len(seen) < MAX_REFERRER_PAGES:
            seen.add(url)
            data, resp = await self._get_small(url, scope=pull_scope(name),
                                               headers={"Accept": OCI_INDEX},
                                               cap=MANIFEST_LIMIT, what=what,
                                               ok=(200, *NO_REFERRERS_API))
            if resp.status != 200:
                return out or None
            try:
                parsed = parse_manifest(data, OCI_INDEX)
            except InvalidManifest as exc:
                raise InvalidResponse(f"{what}: {exc}") from exc
            out.extend(parsed.children)
            url = self._next_page(resp, expected, what)
            if url in seen:
                break
        return out

    @asynccontextmanager
    async def open_blob(self, name: str, digest: str, offset: int = 0
                        ) -> AsyncIterator[BlobResponse]:
        """A blob response, positioned at `offset` (206 when the upstream honours Range).

        The caller checks `resp.status`: 200 means the body starts at byte 0
        whatever was asked. `resp.content.read(n)` and `readinto(buffer)` (the
        cheaper one: see `lazyreg.upstream.body`) raise `Stalled` when the body
        comes slower than the stall rule; the remote's request slot is held
        until the context exits.
        """
        _check_reference(digest)
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        async with self.semaphore:
            resp = await self.send("GET", f"/v2/{name}/blobs/{digest}", scope=pull_scope(name),
                                   headers=headers, ok=(200, 206))
            body = BodyReader(resp)
            try:
                async with resp:
                    yield BlobResponse(resp.status, resp.headers,
                                       GuardedReader(body, self.config.stall,
                                                     f"blob {digest} of {name}"))
            finally:  # once per response: what arrived, read or not
                self.observer.upstream_blob_bytes(body.total_bytes)
                body.close()


__all__ = ["BlobResponse", "ManifestBody", "ManifestInfo", "RemoteConfig", "UpstreamClient",
           "UpstreamError"]
