"""Issue 20, finding 2: an upstream's redirect into the private network, synced and pulled
through a real lazyreg server.

The hostile upstream answers some manifest GETs with `302 Location:` an internal
service on loopback, spelled `127.0.0.1`, `localhost`, `2130706433` and
`0.0.0.0`. The remote's URL is a public address (203.0.113.5, TEST-NET-3) that
a forward proxy routes to the upstream, so the remote's own class is public
and every one of those redirects must be refused before any connection: the
proxy would connect wherever it is asked, as a real one does. A refused
redirect skips its tag with a warning; the good tag is synced.

Then the exceptions, on the same server: a remote on 127.0.0.1 may be sent
elsewhere on loopback but not to 0.0.0.0; and with `allow_private_redirects`
the internal service is reached, but its JSON is not a manifest and is not
stored as one.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.hostile import ForwardProxy, Hostile, Internal, running
from tests.rig import Lazyreg, start_lazyreg

pytestmark = pytest.mark.e2e

PUBLIC = "203.0.113.5:5000"
EVIL = ("evil-ip", "evil-localhost", "evil-decimal", "evil-zero")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[Lazyreg, Hostile, Internal, ForwardProxy]]:
    with running(Internal()) as internal, running(Hostile()) as up, \
            running(ForwardProxy()) as proxy:
        port = internal.url.rsplit(":", 1)[1]
        good = up.add_image("app", "good", b'{"image": "good"}', [b"a good layer"])
        for tag, host in zip(EVIL, ("127.0.0.1", "localhost", "2130706433", "0.0.0.0"),
                             strict=True):
            up.repo("app").tags[tag] = good  # listed; its manifest GET is redirected
            up.redirects[f"/v2/app/manifests/{tag}"] = f"http://{host}:{port}/internal/admin"
        proxy.routes[PUBLIC] = up.url
        server = start_lazyreg(tmp_path_factory.mktemp("redirects") / "data")
        try:
            yield server, up, internal, proxy
        finally:
            server.stop()


def remote(server: Lazyreg, name: str, url: str, **fields: Any) -> None:
    server.ok("POST", "remotes/", {"name": name, "url": url, "upstream_name": "app",
                                   **fields})


def sync(server: Lazyreg, name: str) -> dict[str, Any]:
    server.ok("POST", "repositories/", {"name": name})
    server.ok("POST", "distributions/", {"name": name, "base_path": name, "repository": name})
    task = server.ok("POST", f"repositories/{name}/sync/", {"remote": name})
    return server.wait_task(task, timeout=60)


def tags(server: Lazyreg, name: str) -> set[str]:
    return {t["name"] for t in server.ok("GET", f"content/tags/?repository={name}")["results"]}


def get(server: Lazyreg, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"{server.url}/v2/{path}", timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_public_remote_is_never_redirected_to_loopback(
        world: tuple[Lazyreg, Hostile, Internal, ForwardProxy]) -> None:
    server, _, internal, proxy = world
    remote(server, "pub", f"http://{PUBLIC}", proxy_url=proxy.url)
    task = sync(server, "pub")
    assert task["state"] == "completed", task
    assert tags(server, "pub") == {"good"}
    assert len(task["warnings"]) == len(EVIL), task["warnings"]
    for tag in EVIL:
        [warning] = [w for w in task["warnings"] if f"'{tag}'" in w]
        assert "refused a redirect" in warning and "public" in warning, warning
    assert internal.hits == []
    assert PUBLIC in proxy.seen  # the remote was reached through the proxy

    # Pull-through: the same refusal, with no sync at all.
    server.ok("POST", "distributions/", {"name": "pt", "base_path": "pt",
                                         "pull_through": True, "remote": "pub"})
    for tag in EVIL:
        status, body = get(server, f"pt/app/manifests/{tag}")
        assert status >= 400, (tag, status, body[:200])
        assert internal.secret not in body and b"internal-secret" not in body
    assert get(server, "pt/app/manifests/good")[0] == 200
    assert internal.hits == []


def test_a_loopback_remote_stays_on_loopback_and_json_is_no_manifest(
        world: tuple[Lazyreg, Hostile, Internal, ForwardProxy]) -> None:
    server, up, internal, _ = world
    internal.hits.clear()
    remote(server, "direct", up.url)
    task = sync(server, "direct")
    assert task["state"] == "completed", task
    assert tags(server, "direct") == {"good"}
    warnings = {tag: w for tag in EVIL for w in task["warnings"] if f"'{tag}'" in w}
    # 0.0.0.0 is another class than the remote's 127.0.0.1: refused before connecting.
    assert "refused a redirect to 0.0.0.0" in warnings["evil-zero"]
    # Loopback to loopback is allowed; what answers is no manifest, and is not stored.
    for tag in ("evil-ip", "evil-localhost", "evil-decimal"):
        assert "not a manifest" in warnings[tag], warnings[tag]
    assert len(internal.hits) == 3

    internal.hits.clear()
    remote(server, "opened", f"http://{PUBLIC}", proxy_url=world[3].url,
           allow_private_redirects=True)
    task = sync(server, "opened")
    assert task["state"] == "completed", task
    assert tags(server, "opened") == {"good"}
    assert all("not a manifest" in w for w in task["warnings"]), task["warnings"]
    assert len(internal.hits) == len(EVIL)
    for name in ("direct", "opened"):
        for tag in EVIL:
            status, body = get(server, f"{name}/manifests/{tag}")
            assert status == 404 and b"internal-secret" not in body

