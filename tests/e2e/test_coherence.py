"""Three servers on one PostgreSQL and one data directory: a change made through one is seen
on the others within the stated bound, and a deleted repository is served nowhere once its
DELETE has answered (issue 22, "Caches that are right across nodes").

The bound is `lazyreg.db.changes.SEEN_BOUND` (1 s): each process polls the change feed
every 0.2 s. The deletion is stricter: the DELETE answers only after every process applied
it, so a request that starts after that answer never gets the old repository's tags,
manifests or config, on any node (before the change feed, one did for 0.4-0.5 s).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from lazyreg.db.changes import SEEN_BOUND
from tests.rig import Lazyreg, Upstream, start_lazyreg

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

PASSWORD = "coherence-admin-password"
ACCEPT = ",".join(["application/vnd.docker.distribution.manifest.v2+json",
                   "application/vnd.docker.distribution.manifest.list.v2+json",
                   "application/vnd.oci.image.manifest.v1+json",
                   "application/vnd.oci.image.index.v1+json"])


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Accept": ACCEPT, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def digest_of(server: Lazyreg, name: str, reference: str) -> str | None:
    status, headers, _ = get(f"{server.url}/v2/{name}/manifests/{reference}")
    return headers["Docker-Content-Digest"] if status == 200 else None


def seen_within(check: Callable[[], bool], limit: float, since: float) -> float:
    """Seconds from `since` until `check()` holds, polled every 20 ms; fails past `limit` x 3."""
    while not check():
        if time.monotonic() - since > limit * 3:
            raise AssertionError(f"not seen within {limit * 3:g} s")
        time.sleep(0.02)
    return time.monotonic() - since


class Hammer(threading.Thread):
    """GETs `urls` in a loop, recording (started, status) of each, until stopped."""

    def __init__(self, urls: list[str]) -> None:
        super().__init__(daemon=True)
        self.urls = urls
        self.seen: list[tuple[float, str, int]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            for url in self.urls:
                started = time.monotonic()
                self.seen.append((started, url, get(url)[0]))


def test_changes_through_one_node_reach_the_others(postgres_url: str, upstream: Upstream,
                                                   tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"LAZYREG_AUTH": "on", "LAZYREG_ADMIN_PASSWORD": PASSWORD}
    nodes = [start_lazyreg(data, database_url=postgres_url, env=env) for _ in range(3)]
    a, b, c = nodes
    for node in nodes:
        node.headers = basic("admin", PASSWORD)
    try:
        for remote, upstream_name in (("small", "fixtures/small"), ("multi", "fixtures/multiarch"),
                                      ("oci", "fixtures/oci")):
            a.ok("POST", "remotes/", {"name": remote, "url": upstream.url,
                                      "upstream_name": upstream_name, "policy": "on_demand"})
        for repository, remote in (("one", "small"), ("two", "multi"), ("gone", "small")):
            a.ok("POST", "repositories/", {"name": repository})
            assert a.sync(repository, remote)["state"] == "completed"
        a.ok("POST", "distributions/", {"name": "app", "base_path": "app", "repository": "one"})
        a.ok("POST", "distributions/", {"name": "gone", "base_path": "gone",
                                        "repository": "gone"})
        small = upstream.tag("fixtures/small", "latest")
        multi = upstream.tag("fixtures/multiarch", "latest")
        old = upstream.tag("fixtures/small", "v1")
        for node in (b, c):  # their caches hold the answers
            assert digest_of(node, "app", "latest") == small["digest"]
            assert digest_of(node, "gone", "v1") == old["digest"]

        # A tag re-pointed: `app` serves another repository, whose `latest` is another image.
        a.ok("PATCH", "distributions/app/", {"repository": "two"})
        since = time.monotonic()
        took = [seen_within(lambda n=n: digest_of(n, "app", "latest") == multi["digest"],
                            SEEN_BOUND, since) for n in (b, c)]
        assert max(took) <= SEEN_BOUND, took
        print(f"tag re-pointed: seen on B, C after {took[0]:.3f}, {took[1]:.3f} s")

        # A distribution made private: anonymous pulls on B and C get 401 within the bound.
        a.ok("PATCH", "distributions/app/", {"private": True})
        since = time.monotonic()
        took = [seen_within(lambda n=n: get(f"{n.url}/v2/app/manifests/latest")[0] == 401,
                            SEEN_BOUND, since) for n in (b, c)]
        assert max(took) <= SEEN_BOUND, took
        print(f"made private: seen on B, C after {took[0]:.3f}, {took[1]:.3f} s")

        # A user's tokens, used on B (which then holds the account in memory), ended through A:
        # revoked (a DELETE: refused on B once it answered), by a password change (within
        # the bound), by deleting the user.
        a.ok("POST", "users/", {"username": "eve", "password": "eve-password-1", "role": "viewer"})

        def token_on_b(password: str) -> dict[str, str]:
            minted = json.loads(urllib.request.urlopen(urllib.request.Request(
                f"{b.url}/api/v1/tokens/", data=b"{}", method="POST",
                headers={**basic("eve", password),
                         "Content-Type": "application/json"})).read())
            bearer = {"Authorization": f"Bearer {minted['token']}"}
            assert get(f"{b.url}/api/v1/repositories/", bearer)[0] == 200
            return {**bearer, "id": minted["id"]}
        first = token_on_b("eve-password-1")
        a.ok("DELETE", f"tokens/{first.pop('id')}/")
        assert get(f"{b.url}/api/v1/repositories/", first)[0] == 401
        second = token_on_b("eve-password-1")
        second.pop("id")
        a.ok("PATCH", "users/eve/", {"password": "eve-password-2"})
        since = time.monotonic()
        took = [seen_within(lambda: get(f"{b.url}/api/v1/repositories/", second)[0] == 401,
                            SEEN_BOUND, since)]
        assert max(took) <= SEEN_BOUND, took
        print(f"password changed: old token refused on B after {took[0]:.3f} s")
        third = token_on_b("eve-password-2")
        third.pop("id")
        a.ok("DELETE", "users/eve/")
        assert get(f"{b.url}/api/v1/repositories/", third)[0] == 401

        # A repository deleted: once the DELETE has answered, no node serves its content.
        old_urls = ["/v2/gone/manifests/v1", f"/v2/gone/manifests/{old['digest']}",
                    f"/v2/gone/blobs/{old['config']['digest']}"]
        hammers = [Hammer([node.url + u for u in old_urls]) for node in (b, c)]
        for hammer in hammers:
            hammer.start()
        time.sleep(0.5)
        assert all(any(s == 200 for _, _, s in h.seen) for h in hammers)  # served until now
        asked = time.monotonic()
        a.ok("DELETE", "repositories/gone/")
        answered = time.monotonic()
        time.sleep(1.0)
        for hammer in hammers:
            hammer.halt.set()
            hammer.join()
        late = [(round(t - answered, 3), u, s) for h in hammers for t, u, s in h.seen
                if t > answered and s == 200]
        assert late == [], late[:5]
        assert all(any(t > answered for t, _, _ in h.seen) for h in hammers)
        print(f"DELETE took {answered - asked:.3f} s (waiting for every node)")

        # A new repository of the same name: its own content, never the old one's.
        a.ok("POST", "repositories/", {"name": "gone"})
        assert a.sync("gone", "oci")["state"] == "completed"
        a.ok("POST", "distributions/", {"name": "gone", "base_path": "gone",
                                        "repository": "gone"})
        fresh = upstream.tag("fixtures/oci", "1.0")
        since = time.monotonic()
        for node in (b, c):
            seen_within(lambda node=node: digest_of(node, "gone", "1.0") == fresh["digest"],
                        SEEN_BOUND, since)
            for url in old_urls:
                assert get(node.url + url)[0] == 404, url
    finally:
        for node in nodes:
            node.stop()


def test_two_servers_on_one_sqlite_file_never_serve_a_deleted_repository(
        upstream: Upstream, tmp_path: Path) -> None:
    """The same feed on SQLite, for several processes of one machine on one data directory."""
    data = tmp_path / "data"
    a = start_lazyreg(data)
    b = start_lazyreg(data)
    try:
        a.ok("POST", "remotes/", {"name": "small", "url": upstream.url,
                                  "upstream_name": "fixtures/small", "policy": "on_demand"})
        a.ok("POST", "repositories/", {"name": "gone"})
        assert a.sync("gone", "small")["state"] == "completed"
        a.ok("POST", "distributions/", {"name": "gone", "base_path": "gone",
                                        "repository": "gone"})
        old = upstream.tag("fixtures/small", "v1")
        assert digest_of(b, "gone", "v1") == old["digest"]
        hammer = Hammer([f"{b.url}/v2/gone/manifests/v1",
                         f"{b.url}/v2/gone/blobs/{old['config']['digest']}"])
        hammer.start()
        time.sleep(0.3)
        a.ok("DELETE", "repositories/gone/")
        answered = time.monotonic()
        time.sleep(0.6)
        hammer.halt.set()
        hammer.join()
        assert any(s == 200 for t, _, s in hammer.seen if t < answered)
        late = [(round(t - answered, 3), u) for t, u, s in hammer.seen
                if t > answered and s == 200]
        assert late == [], late[:5]
        a.ok("POST", "repositories/", {"name": "gone"})
        a.ok("POST", "distributions/", {"name": "gone", "base_path": "gone",
                                        "repository": "gone"})
        since = time.monotonic()
        took = seen_within(lambda: get(f"{b.url}/v2/gone/manifests/v1")[0] == 404
                           and get(f"{b.url}/v2/gone/tags/list")[0] == 200, SEEN_BOUND, since)
        assert took <= SEEN_BOUND, took
    finally:
        a.stop()
        b.stop()
