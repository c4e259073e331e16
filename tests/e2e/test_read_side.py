"""The /v2 read side against real servers: ETag and 304, memory under Accept variety, bad input."""

from __future__ import annotations

import http.client
import json
from urllib.parse import quote

import pytest

from lazyreg.oci import mediatypes as mt
from tests.e2e.v2 import ACCEPT_ALL, Answer, push_image, request, sha256
from tests.rig import Lazyreg, Upstream

pytestmark = pytest.mark.e2e


def get(server: Lazyreg, path: str, method: str = "GET",
        headers: dict[str, str] | None = None) -> Answer:
    return request(f"{server.url}/v2/{path}", method, {"Accept": ACCEPT_ALL, **(headers or {})})


def test_etag_on_head_and_get_and_304_by_tag_and_by_digest(lazyreg: Lazyreg,
                                                           upstream: Upstream) -> None:
    lazyreg.setup_mirror(upstream, "small", "fixtures/small")
    v1 = upstream.tag("fixtures/small", "v1")
    etag = f'"{v1["digest"]}"'
    for ref in ("v1", v1["digest"]):
        got, head = get(lazyreg, f"small/manifests/{ref}"), get(lazyreg, f"small/manifests/{ref}",
                                                                 "HEAD")
        assert (got.status, sha256(got.body)) == (200, v1["digest"])
        assert got.headers["ETag"] == head.headers["ETag"] == etag
        for method in ("GET", "HEAD"):
            for condition in (etag, f"W/{etag}", "*", f'"sha256:{"0" * 64}", {etag}'):
                answer = get(lazyreg, f"small/manifests/{ref}", method,
                             {"If-None-Match": condition})
                assert (answer.status, answer.body) == (304, b""), (ref, method, condition)
                assert answer.headers["ETag"] == etag
                assert answer.headers["Docker-Content-Digest"] == v1["digest"]
        stale = get(lazyreg, f"small/manifests/{ref}", "GET",
                    {"If-None-Match": f'"sha256:{"0" * 64}"'})
        assert (stale.status, sha256(stale.body)) == (200, v1["digest"])


def test_2000_accept_variants_keep_memory_flat(lazyreg: Lazyreg, upstream: Upstream) -> None:
    # About 64 KiB of manifest: a copy per Accept header would be 128 MiB.
    digest, data = push_image(upstream.url, "readside/big", "v1", "big",
                              annotations={"pad": "x" * 64 * 1024})
    task = lazyreg.setup_mirror(upstream, "big", "readside/big")
    assert task["state"] == "completed", task
    host, port = lazyreg.host.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)

    def pull(accept: str) -> None:
        conn.request("GET", "/v2/big/manifests/v1", headers={"Accept": accept})
        resp = conn.getresponse()
        body = resp.read()
        assert (resp.status, len(body)) == (200, len(data))
    try:
        for i in range(50):  # the allocator's first growth is not the cache's
            pull(f"application/x-warm-{i}, {mt.OCI_MANIFEST}")
        before = lazyreg.rss_kib()
        for i in range(2000):
            pull(f"application/x-probe-{i};q=0.{i % 10}, {mt.OCI_MANIFEST}, */{i}")
        grown_mib = (lazyreg.rss_kib() - before) / 1024
    finally:
        conn.close()
    assert grown_mib < 20, f"RSS grew {grown_mib:.1f} MiB"
    assert sha256(get(lazyreg, "big/manifests/v1").body) == digest


SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"


def test_referrers_of_a_synced_image(lazyreg: Lazyreg, upstream: Upstream) -> None:
    """An artifact whose subject is an image, synced by its tag, is found by the referrers API."""
    repo = "readside/signed"
    digest, data = push_image(upstream.url, repo, "v1", "signed")
    subject = {"mediaType": mt.OCI_MANIFEST, "digest": digest, "size": len(data)}
    annotations = {"dev.cosignproject.cosign/signature": "MEUCIQ"}
    sig, _ = push_image(upstream.url, repo, "v1-sig", "signature", artifactType=SIG,
                        subject=subject, annotations=annotations)
    other, _ = push_image(upstream.url, repo, "v1-sbom", "sbom",
                          artifactType="application/spdx+json", subject=subject)
    assert lazyreg.setup_mirror(upstream, "signed", repo)["state"] == "completed"

    listed = get(lazyreg, f"signed/referrers/{digest}")
    assert listed.status == 200
    assert listed.headers["Content-Type"] == mt.OCI_INDEX
    index = listed.json()
    assert (index["schemaVersion"], index["mediaType"]) == (2, mt.OCI_INDEX)
    found = {d["digest"]: d for d in index["manifests"]}
    assert set(found) == {sig, other}
    assert found[sig]["artifactType"] == SIG
    assert found[sig]["annotations"] == annotations
    assert found[sig]["mediaType"] == mt.OCI_MANIFEST
    fetched = get(lazyreg, f"signed/manifests/{sig}")
    assert found[sig]["size"] == len(fetched.body)

    filtered = get(lazyreg, f"signed/referrers/{digest}?artifactType={quote(SIG, safe='')}")
    assert [d["digest"] for d in filtered.json()["manifests"]] == [sig]
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    assert get(lazyreg, f"signed/referrers/{sig}").json()["manifests"] == []


MALFORMED = [
    (f"small/manifests/sha256:{'a' * 64}%0a", 400, "DIGEST_INVALID"),
    (f"small/manifests/sha256:{'a' * 64}%0A", 400, "DIGEST_INVALID"),
    ("small/manifests/sha256:abc", 400, "DIGEST_INVALID"),
    ("small/manifests/md5:d41d8cd98f00b204e9800998ecf8427e", 400, "DIGEST_INVALID"),
    ("small/manifests/v1%0a", 400, "MANIFEST_INVALID"),
    (f"small/manifests/{'t' * 129}", 400, "MANIFEST_INVALID"),
    ("small/manifests/%C2%B2", 400, "MANIFEST_INVALID"),
    (f"{'a' * 256}/manifests/v1", 400, "NAME_INVALID"),
    (f"{'a/' * 2000}a/manifests/v1", 400, "NAME_INVALID"),
    (f"{'a' * 256}/tags/list", 400, "NAME_INVALID"),
    (f"{'a' * 256}/referrers/sha256:{'a' * 64}", 400, "NAME_INVALID"),
    ("small%0a/manifests/v1", 400, "NAME_INVALID"),
    ("Small/manifests/v1", 400, "NAME_INVALID"),
    ("a..b/tags/list", 400, "NAME_INVALID"),
    ("small/tags/list?n=-1", 400, "PAGINATION_NUMBER_INVALID"),
    (f"small/tags/list?n={'9' * 5000}", 200, None),
    ("_catalog?n=-5", 400, "PAGINATION_NUMBER_INVALID"),
    (f"_catalog?n={'9' * 40}", 200, None),
    ("small/tags/list?last=%00", 400, "UNSUPPORTED"),
    ("_catalog?last=%ff%fe", 200, None),
    (f"small/referrers/sha256:{'a' * 64}%0a", 400, "DIGEST_INVALID"),
    (f"small/referrers/sha256:{'a' * 64}", 200, None),
]


def test_malformed_input_is_a_4xx_never_a_500(lazyreg: Lazyreg, upstream: Upstream) -> None:
    lazyreg.setup_mirror(upstream, "small", "fixtures/small")
    wrong = []
    for path, status, code in MALFORMED:
        answer = get(lazyreg, path)
        got = (answer.status, answer.code if answer.status >= 400 else None)
        if got != (status, code):
            wrong.append((path[:80], got, answer.body[:200]))
        elif status == 200:
            json.loads(answer.body)
    assert wrong == []
