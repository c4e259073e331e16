"""`include_referrers` against the rig's real registry, which has no referrers API.

distribution 2.8 answers 404 on `/referrers/`, so a sync finds referrers the way
cosign and the OCI fallback schema publish them: cosign's `sha256-<hex>.sig`
tag, and the `sha256-<hex>` tag holding an index of the manifests whose
`subject` is that image.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.e2e.v2 import ACCEPT_ALL, Answer, request
from tests.pusher import OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, Pusher, descriptor, sha256
from tests.rig import Lazyreg, Upstream, dir_blobs, skopeo_copy

pytestmark = pytest.mark.e2e

REPO = "refs/app"
SIG = "application/vnd.dev.cosign.simplesigning.v1+json"
SBOM = "application/spdx+json"


def _get(server: Lazyreg, path: str) -> Answer:
    return request(f"{server.url}/v2/{path}", headers={"Accept": ACCEPT_ALL})


@pytest.fixture(scope="module")
def signed(upstream: Upstream) -> Iterator[dict[str, str]]:
    """An image with a cosign signature tag and an SBOM published by the fallback tag schema."""
    p = Pusher(upstream.url)
    try:
        image = p.image(REPO, "v1", b'{"architecture":"amd64","os":"linux","n":"refs"}',
                        [b"the application layer", b"its second layer"])
        fallback = "sha256-" + image.removeprefix("sha256:")
        # cosign: the payload is a layer of a manifest tagged sha256-<hex>.sig, no subject.
        payload = json.dumps({"critical": {"image": {"docker-manifest-digest": image}}}).encode()
        signature = p.image(REPO, fallback + ".sig", b"{}", [payload])
        # OCI 1.1 artifact with a subject, listed by the fallback tag's index.
        sbom_doc = b'{"spdxVersion":"SPDX-2.3","name":"app"}'
        p.blob(REPO, b"{}")
        p.blob(REPO, sbom_doc)
        subject = {"mediaType": OCI_MANIFEST, "digest": image,
                   "size": len(p.manifests[image])}
        sbom = p.manifest(REPO, None, {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SBOM,
            "config": descriptor(OCI_EMPTY, b"{}"),
            "layers": [descriptor(SBOM, sbom_doc)], "subject": subject,
            "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}})
        p.manifest(REPO, fallback, {
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [descriptor(OCI_MANIFEST, p.manifests[sbom], artifactType=SBOM)]})
        yield {"image": image, "signature": signature, "sbom": sbom, "fallback": fallback,
               "sbom_doc": sbom_doc.decode(), "payload": payload.decode()}
    finally:
        p.close()


def _mirror(server: Lazyreg, upstream: Upstream, name: str, include_referrers: bool) -> None:
    # Only v1 is selected: the referrer tags come in because they refer to it.
    task = server.setup_mirror(upstream, name, REPO, include_tags=["v1"],
                               include_referrers=include_referrers)
    assert task["state"] == "completed", task
    assert task["warnings"] == [], task


def test_referrers_of_a_synced_image_are_mirrored_and_served(
        lazyreg: Lazyreg, upstream: Upstream, signed: dict[str, str], tmp_path: Path) -> None:
    _mirror(lazyreg, upstream, "signed", include_referrers=True)
    image, fallback = signed["image"], signed["fallback"]

    sig = _get(lazyreg, f"signed/manifests/{fallback}.sig")
    assert (sig.status, sha256(sig.body)) == (200, signed["signature"])
    payload_digest = json.loads(sig.body)["layers"][0]["digest"]
    payload = _get(lazyreg, f"signed/blobs/{payload_digest}")  # fetched lazily
    assert (payload.status, payload.body.decode()) == (200, signed["payload"])

    listed = _get(lazyreg, f"signed/referrers/{image}")
    assert listed.status == 200
    [entry] = listed.json()["manifests"]
    assert (entry["digest"], entry["artifactType"]) == (signed["sbom"], SBOM)
    assert entry["annotations"] == {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}
    filtered = _get(lazyreg, f"signed/referrers/{image}?artifactType={quote(SIG, safe='')}")
    assert filtered.json()["manifests"] == []
    sbom = _get(lazyreg, f"signed/manifests/{signed['sbom']}")
    assert (sbom.status, sha256(sbom.body)) == (200, signed["sbom"])
    layer = json.loads(sbom.body)["layers"][0]["digest"]
    assert _get(lazyreg, f"signed/blobs/{layer}").body.decode() == signed["sbom_doc"]

    tags = _get(lazyreg, "signed/tags/list").json()["tags"]
    assert set(tags) == {"v1", fallback, f"{fallback}.sig"}
    # The image itself still pulls, referrers or not.
    out = tmp_path / "v1"
    skopeo_copy(f"{lazyreg.host}/signed:v1", out)
    assert sha256((out / "manifest.json").read_bytes()) == image
    assert len(dir_blobs(out)) == 3


def test_without_include_referrers_only_the_selected_tags_come(
        lazyreg: Lazyreg, upstream: Upstream, signed: dict[str, str]) -> None:
    _mirror(lazyreg, upstream, "plain", include_referrers=False)
    assert _get(lazyreg, "plain/tags/list").json()["tags"] == ["v1"]
    assert _get(lazyreg, f"plain/manifests/{signed['fallback']}.sig").status == 404
    assert _get(lazyreg, f"plain/referrers/{signed['image']}").json()["manifests"] == []
