"""The sync pipeline in process: lazyreg's app against the hostile upstream on the same loop.

The end-to-end tests (tests/e2e/test_hostile_sync.py, test_shapes.py) run the
real server process; these cover the pipeline's rules one by one, quickly.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from lazyreg.app import create_app
from lazyreg.config import Settings
from lazyreg.db import leases
from lazyreg.db.models import Blob, BlobSource, Lease, Manifest, ManifestSource
from lazyreg.state import STATE
from lazyreg.worker import WorkerId
from tests.hostile import OCI_MANIFEST, Hostile, descriptor, digest

API = "/api/v1"


@dataclass
class Env:
    client: TestClient[Any, Any]
    up: Hostile

    async def api(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        resp = await self.client.request(method, f"{API}/{path}", json=body)
        data = await resp.json() if resp.status != 204 else None
        assert resp.status == status, data
        return data

    async def mirror(self, name: str, upstream_name: str = "app", **remote: Any) -> None:
        await self.api("POST", "remotes/", {"name": name, "url": self.up.url,
                                            "upstream_name": upstream_name, **remote}, 201)
        await self.api("POST", "repositories/", {"name": name}, 201)
        await self.api("POST", "distributions/", {"name": name, "base_path": name,
                                                  "repository": name}, 201)

    async def sync(self, name: str, **body: Any) -> dict[str, Any]:
        task = await self.api("POST", f"repositories/{name}/sync/", {"remote": name, **body},
                              202)
        await self.client.app[STATE].tasks.wait(task["id"])
        result: dict[str, Any] = await self.api("GET", f"tasks/{task['id']}/")
        return result

    async def content(self, kind: str, name: str) -> set[str]:
        page = await self.api("GET", f"content/{kind}/?repository={name}&limit=1000")
        key = "name" if kind == "tags" else "digest"
        return {item[key] for item in page["results"]}

    async def v2(self, method: str, path: str) -> tuple[int, bytes]:
        resp = await self.client.request(method, f"/v2/{path}")
        return resp.status, await resp.read()

    async def db(self, fn: Any) -> Any:
        return await self.client.app[STATE].services.db.read(fn)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    up = Hostile()
    upstream = TestServer(up.app())
    await upstream.start_server()
    up.url = str(upstream.make_url("/")).rstrip("/")
    settings = Settings(data_dir=tmp_path, upstream_retries=0, upstream_backoff=0)
    async with TestClient(TestServer(create_app(settings))) as client:
        yield Env(client, up)
    await upstream.close()


def _image(up: Hostile, tag: str | None, n: int, name: str = "app", **kw: Any) -> str:
    return up.add_image(name, tag, b'{"n": %d}' % n, [b"layer-%d" % n], **kw)


def _upstream_requests(up: Hostile, method: str, part: str) -> int:
    return sum(1 for m, p in up.requests if m == method and part in p)


async def test_first_sync_gets_new_tags_without_head_and_resync_only_heads(env: Env) -> None:
    for i in range(5):
        _image(env.up, f"v{i}", i)
    await env.mirror("m")
    task = await env.sync("m")
    assert task["state"] == "completed", task
    assert task["warnings"] == []
    assert _upstream_requests(env.up, "HEAD", "/manifests/") == 0
    assert _upstream_requests(env.up, "GET", "/manifests/") == 5
    assert _upstream_requests(env.up, "GET", "/blobs/") == 5  # each config once
    env.up.requests.clear()
    task = await env.sync("m")
    assert task["state"] == "completed" and task["created_resources"] == []
    assert _upstream_requests(env.up, "HEAD", "/manifests/") == 5
    assert _upstream_requests(env.up, "GET", "/") == 1  # the tag list only


async def test_nested_indexes_are_mirrored_whole(env: Env) -> None:
    images = [_image(env.up, None, i) for i in range(4)]
    inner = [env.up.add_index("app", None, images[:2]), env.up.add_index("app", None, images[2:])]
    top = env.up.add_index("app", "nested", inner)
    await env.mirror("m")
    task = await env.sync("m")
    assert task["state"] == "completed", task
    assert await env.content("manifests", "m") == {top, *inner, *images}
    assert len(await env.content("blobs", "m")) == 8  # 4 configs, 4 layers
    for d in (top, *inner, *images):
        status, body = await env.v2("GET", f"m/manifests/{d}")
        assert status == 200 and digest(body) == d


async def test_foreign_layers_are_not_blobs_of_the_version(env: Env) -> None:
    foreign = b"windows base layer"
    env.up.add_image("app", "win", b'{"os": "windows"}', [b"own layer"], foreign=(foreign,))
    await env.mirror("m", policy="immediate")
    task = await env.sync("m")
    assert task["state"] == "completed", task
    assert digest(foreign) not in await env.content("blobs", "m")
    assert not any("/blobs/" + digest(foreign) in p for p in env.up.paths())
    for method in ("HEAD", "GET"):
        status, _ = await env.v2(method, f"m/blobs/{digest(foreign)}")
        assert status == 404


async def test_broken_tags_are_skipped_with_a_warning_each(env: Env) -> None:
    up = env.up
    _image(up, "good", 1)
    up.add_manifest("app", b"{not json", "malformed", media_type=OCI_MANIFEST)
    missing_child = _image(up, None, 2)
    up.add_index("app", "child-404", [missing_child])
    del up.repo("app").manifests[missing_child]
    up.add_manifest("app", {"mediaType": OCI_MANIFEST, "schemaVersion": 2,
                            "config": descriptor("c", b"{}"), "layers": [],
                            "annotations": {"pad": "x" * (4 * 1024 * 1024)}}, "too-big")
    up.add_manifest("app", {"mediaType": OCI_MANIFEST, "schemaVersion": 2,
                            "config": {"mediaType": "c", "digest": "sha384:" + "a" * 96,
                                       "size": 2}, "layers": []}, "sha384")
    up.extra_tags["app"] = ["../x"]
    await env.mirror("m")
    task = await env.sync("m")
    assert task["state"] == "completed", task
    assert await env.content("tags", "m") == {"good"}
    warnings = task["warnings"]
    expected = {"'malformed'": "not valid JSON", "'child-404'": "not found upstream",
                "'too-big'": "more than the limit of 4194304",
                "'sha384'": "unsupported digest algorithm",
                "'../x'": "not a valid tag name"}
    assert len(warnings) == len(expected), warnings
    for tag, why in expected.items():
        assert any(f"tag {tag} skipped" in w and why in w for w in warnings), (tag, warnings)
    assert not any("../x" in p for p in up.paths())


async def test_strict_sync_fails_on_a_broken_tag_and_writes_no_version(env: Env) -> None:
    _image(env.up, "good", 1)
    env.up.add_manifest("app", b"{not json", "malformed", media_type=OCI_MANIFEST)
    await env.mirror("m")
    task = await env.sync("m", strict=True)
    assert task["state"] == "failed"
    assert "'malformed' skipped" in task["error"] and "strict" in task["error"]
    assert task["params"]["strict"] is True
    assert (await env.api("GET", "repositories/m/"))["latest_version"] == 0


async def test_a_lying_get_digest_skips_the_tag(env: Env) -> None:
    _image(env.up, "good", 1)
    liar = _image(env.up, "liar", 2)
    repo = env.up.repo("app")
    repo.manifests[liar] = (repo.manifests[liar][0] + b" ", OCI_MANIFEST)  # bytes changed
    await env.mirror("m")
    task = await env.sync("m")
    assert await env.content("tags", "m") == {"good"}
    assert any("'liar'" in w and "hash to" in w for w in task["warnings"]), task


async def test_mirror_keeps_a_tag_that_failed_this_time(env: Env) -> None:
    _image(env.up, "a", 1)
    b = _image(env.up, "b", 2)
    await env.mirror("m")
    assert (await env.sync("m"))["state"] == "completed"
    repo = env.up.repo("app")
    repo.manifests[b] = (b"{broken", OCI_MANIFEST)
    env.up.head_lies[("app", "b")] = "sha256:" + "0" * 64  # moved, so it is fetched again
    task = await env.sync("m", mirror=True)
    assert task["state"] == "completed" and len(task["warnings"]) == 1, task
    assert await env.content("tags", "m") == {"a", "b"}


async def test_sha512_blobs_are_synced_and_recorded(env: Env) -> None:
    layer = b"a sha512 layer"
    env.up.add_image("app", "v1", b'{"n": 1}', [], algorithm="sha256")
    manifest = {"mediaType": OCI_MANIFEST, "schemaVersion": 2,
                "config": descriptor("application/vnd.oci.image.config.v1+json", b'{"n": 1}'),
                "layers": [descriptor("l", layer, "sha512")]}
    env.up.add_blob(layer, "sha512")
    env.up.add_manifest("app", manifest, "v512")
    await env.mirror("m")
    task = await env.sync("m")
    assert task["state"] == "completed", task
    assert digest(layer, "sha512") in await env.content("blobs", "m")


async def test_subject_and_artifact_type_are_recorded(env: Env) -> None:
    image = _image(env.up, "v1", 1)
    sig = env.up.add_image("app", "sig", b"{}", [b"signature"], subject=image,
                           artifact_type="application/vnd.example.sig")
    await env.mirror("m")
    assert (await env.sync("m"))["state"] == "completed"
    rows = await env.db(lambda s: {m.digest: (m.subject_digest, m.artifact_type)
                                   for m in s.scalars(select(Manifest))})
    assert rows[sig] == (image, "application/vnd.example.sig")
    assert rows[image] == (None, "application/vnd.oci.image.config.v1+json")


async def test_referrers_from_the_referrers_api(env: Env) -> None:
    env.up.referrers_api = True
    image = _image(env.up, "v1", 1)
    sbom = env.up.add_image("app", None, b"{}", [b"sbom"], subject=image,
                            artifact_type="application/spdx+json")
    signed_sbom = env.up.add_image("app", None, b"{}", [b"sig of sbom"], subject=sbom,
                                   artifact_type="application/vnd.example.sig")
    await env.mirror("m", include_tags=["v1"], include_referrers=True)
    task = await env.sync("m")
    assert task["state"] == "completed", task
    assert await env.content("manifests", "m") == {image, sbom, signed_sbom}
    assert await env.content("tags", "m") == {"v1"}


async def test_referrers_from_fallback_and_cosign_tags(env: Env) -> None:
    image = _image(env.up, "v1", 1)
    hex_ = image.removeprefix("sha256:")
    attestation = env.up.add_image("app", None, b"{}", [b"provenance"], subject=image,
                                   artifact_type="application/vnd.in-toto+json")
    fallback = env.up.add_index("app", f"sha256-{hex_}", [attestation])
    cosign = env.up.add_image("app", f"sha256-{hex_}.sig", b"{}", [b"cosign signature"])
    _image(env.up, "other", 2)
    await env.mirror("m", include_tags=["v1"], include_referrers=True)
    task = await env.sync("m")
    assert task["state"] == "completed", task
    assert await env.content("tags", "m") == {"v1", f"sha256-{hex_}", f"sha256-{hex_}.sig"}
    assert {image, fallback, attestation, cosign} <= await env.content("manifests", "m")
    # Only tags the upstream listed were asked for: no .att or .sbom guesses.
    assert not any(p.endswith((".att", ".sbom")) for p in env.up.paths())


async def test_without_include_referrers_no_referrer_is_looked_for(env: Env) -> None:
    env.up.referrers_api = True
    image = _image(env.up, "v1", 1)
    env.up.add_image("app", None, b"{}", [b"sbom"], subject=image)
    await env.mirror("m")
    assert (await env.sync("m"))["state"] == "completed"
    assert not any("/referrers/" in p for p in env.up.paths())
    assert await env.content("manifests", "m") == {image}


async def test_sources_are_recorded_for_what_this_remote_served(env: Env) -> None:
    image = _image(env.up, "v1", 1)
    await env.mirror("m")
    assert (await env.sync("m"))["state"] == "completed"

    def query(session: Any) -> tuple[int, int]:
        manifest_sources = len(session.scalars(select(ManifestSource).join(
            Manifest, Manifest.id == ManifestSource.manifest_id)
            .where(Manifest.digest == image)).all())
        blob_sources = len(session.scalars(select(BlobSource)).all())
        return manifest_sources, blob_sources
    assert await env.db(query) == (1, 2)
    assert len(await env.db(lambda s: s.scalars(select(Blob)).all())) == 2


# ---------------------------------------------------------------- configs and interleavings

async def _tasks_of(env: Env, *names: str) -> list[dict[str, Any]]:
    """Start syncs of several repositories at once; their finished tasks."""
    started = [await env.api("POST", f"repositories/{n}/sync/", {"remote": n}, 202)
               for n in names]
    for task in started:
        await env.client.app[STATE].tasks.wait(task["id"])
    return [await env.api("GET", f"tasks/{t['id']}/") for t in started]


async def test_two_syncs_of_the_same_images_fetch_each_config_once(env: Env) -> None:
    for i in range(6):
        _image(env.up, f"v{i}", i)
    await env.mirror("one")
    await env.mirror("two")
    tasks = await _tasks_of(env, "one", "two")
    assert [t["state"] for t in tasks] == ["completed", "completed"], tasks
    assert _upstream_requests(env.up, "GET", "/blobs/") == 6
    for t in tasks:
        assert t["progress"]["tags"] == {"done": 6, "total": 6}


async def test_a_config_the_upstream_lacks_skips_its_tag_or_fails_a_strict_sync(
        env: Env) -> None:
    _image(env.up, "good", 1)
    _image(env.up, "no-config", 2)
    del env.up.blobs[digest(b'{"n": 2}')]
    await env.mirror("m")
    task = await env.sync("m")
    assert task["state"] == "completed", task
    assert await env.content("tags", "m") == {"good"}
    assert len(task["warnings"]) == 1 and "'no-config' skipped" in task["warnings"][0]
    strict = await env.sync("m", strict=True)
    assert strict["state"] == "failed" and "'no-config' skipped" in strict["error"]


async def test_a_config_another_process_is_fetching_is_waited_for_then_taken_over(
        env: Env) -> None:
    _image(env.up, "v1", 1)
    config = digest(b'{"n": 1}')
    other = WorkerId(WorkerId.current().host, os.getppid())  # alive, and not us
    services = env.client.app[STATE].services
    await services.db.write(lambda s: leases.claim(s, f"blob:{config}", other, 3600))
    await env.mirror("m")
    task = await env.api("POST", "repositories/m/sync/", {"remote": "m"}, 202)
    await asyncio.sleep(0.5)  # five looks at the other process's lease
    assert (await env.api("GET", f"tasks/{task['id']}/"))["state"] == "running"
    assert _upstream_requests(env.up, "GET", "/blobs/") == 0
    await services.db.write(lambda s: leases.release(s, f"blob:{config}", other))  # it gave up
    await env.client.app[STATE].tasks.wait(task["id"])
    done = await env.api("GET", f"tasks/{task['id']}/")
    assert done["state"] == "completed", done
    assert _upstream_requests(env.up, "GET", "/blobs/") == 1
    assert await services.store.stat(config) == len(b'{"n": 1}')


async def test_shutdown_in_the_middle_of_a_sync_cancels_it_and_frees_its_leases(
        env: Env) -> None:
    _image(env.up, "v1", 1)
    env.up.drip_blobs[digest(b'{"n": 1}')] = 0.05
    await env.mirror("m")
    task = await env.api("POST", "repositories/m/sync/", {"remote": "m"}, 202)
    app = env.client.app[STATE]
    async with asyncio.timeout(10):
        while not _upstream_requests(env.up, "GET", "/blobs/"):
            await asyncio.sleep(0.01)
    await app.tasks.shutdown()  # type: ignore[attr-defined]  # the runner, not the protocol
    await app.fetcher.close()
    canceled = await env.api("GET", f"tasks/{task['id']}/")
    assert canceled["state"] == "canceled", canceled
    assert (await env.api("GET", "repositories/m/"))["latest_version"] == 0
    assert await app.services.db.read(lambda s: s.scalars(select(Lease)).all()) == []
