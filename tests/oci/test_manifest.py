from __future__ import annotations

import json

import pytest

from lazyreg.oci import mediatypes as mt
from lazyreg.oci.digest import InvalidDigest, parse_digest, sha256_digest
from lazyreg.oci.manifest import InvalidManifest, parse_manifest
from lazyreg.oci.names import is_repository_name, is_tag

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def test_image_manifest_lists_config_and_layers_in_order() -> None:
    doc = {"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST,
           "config": {"mediaType": "c", "digest": D1, "size": 5},
           "layers": [{"mediaType": "l", "digest": D2, "size": 7}]}
    parsed = parse_manifest(json.dumps(doc).encode())
    assert parsed.media_type == mt.DOCKER_MANIFEST
    assert parsed.config is not None and parsed.config.digest == D1
    assert [b.digest for b in parsed.blobs] == [D1, D2]
    assert not parsed.is_list


def test_oci_index_without_media_type_is_recognised_by_shape() -> None:
    doc = {"schemaVersion": 2, "manifests": [
        {"mediaType": mt.OCI_MANIFEST, "digest": D1, "size": 3,
         "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}]}
    parsed = parse_manifest(json.dumps(doc).encode())
    assert parsed.media_type == mt.OCI_INDEX and parsed.is_list
    assert parsed.children[0].platform is not None
    assert parsed.children[0].platform.variant == "v8"


def test_unknown_media_type_is_opaque_not_rejected() -> None:
    parsed = parse_manifest(b'{"mediaType": "application/vnd.example+json", "x": 1}')
    assert parsed.media_type == "application/vnd.example+json"
    assert parsed.blobs == () and parsed.children == ()


@pytest.mark.parametrize("data", [
    b"{not json", b"[1, 2]", b'{"mediaType": "%s"}' % mt.DOCKER_MANIFEST.encode(),
    json.dumps({"mediaType": mt.DOCKER_MANIFEST, "config": {"digest": "md5:x", "size": 1},
                "layers": []}).encode(),
    json.dumps({"mediaType": mt.OCI_INDEX, "manifests": [{"digest": D1, "size": -1}]}).encode(),
])
def test_malformed_manifests_raise(data: bytes) -> None:
    with pytest.raises(InvalidManifest):
        parse_manifest(data)


def test_digests_and_names() -> None:
    assert parse_digest(D1) == D1
    with pytest.raises(InvalidDigest):
        parse_digest("sha256:ABC")
    assert sha256_digest(b"") == ("sha256:e3b0c44298fc1c149afbf4c8996fb924"
                                  "27ae41e4649b934ca495991b7852b855")
    assert is_repository_name("team/mirrors/alpine")
    assert not is_repository_name("Team/x") and not is_repository_name("a//b")
    assert is_tag("v1.0-rc_1") and not is_tag(".hidden") and not is_tag("a" * 129)
