from __future__ import annotations

import json

import pytest

from lazyreg.oci import mediatypes as mt
from lazyreg.oci.digest import (
    InvalidDigest,
    UnsupportedDigest,
    digest_of,
    is_valid_digest,
    parse_digest,
    sha256_digest,
)
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
    parsed = parse_manifest(b'{"schemaVersion": 2, "mediaType": "application/vnd.example+json"'
                            b', "x": 1}')
    assert parsed.media_type == "application/vnd.example+json"
    assert parsed.blobs == () and parsed.children == ()
    for data, content_type in (
            (b'{"mediaType": "application/vnd.oci.artifact.manifest.v1+json"}', None),
            (b'{"signatures": []}', "application/vnd.docker.distribution.manifest.v1+prettyjws"),
            (b'{"name": "x"}', "application/vnd.example.manifest.v3+json")):
        assert parse_manifest(data, content_type).blobs == ()


@pytest.mark.parametrize(("data", "content_type"), [
    (b'{"admin": true, "users": ["root"]}', "application/json"),
    (b'{"mediaType": "application/vnd.example+json", "x": 1}', None),
    (b'{"schemaVersion": true}', "text/html"),
    (b'{"status": "ok"}', "application/octet-stream"),
])
def test_json_that_says_it_is_no_manifest_is_refused(data: bytes, content_type: str | None
                                                     ) -> None:
    """Issue 20: an internal service's JSON, reached through a redirect, was stored."""
    with pytest.raises(InvalidManifest, match="not a manifest"):
        parse_manifest(data, content_type)


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


D512 = "sha512:" + "5" * 128


@pytest.mark.parametrize("value", [D1, D512])
def test_sha256_and_sha512_digests_are_valid(value: str) -> None:
    assert parse_digest(value) == value
    assert digest_of(b"x", value.split(":")[0]).startswith(value.split(":")[0] + ":")


@pytest.mark.parametrize("value", [D1 + "\n", D512 + "\n", "sha256:" + "1" * 63,
                                   "SHA256:" + "1" * 64, "sha512:" + "5" * 64, " " + D1])
def test_malformed_digests_are_invalid_even_with_a_trailing_newline(value: str) -> None:
    with pytest.raises(InvalidDigest):
        parse_digest(value)
    assert not is_valid_digest(value)


def test_an_unknown_algorithm_is_unsupported_not_malformed() -> None:
    with pytest.raises(UnsupportedDigest):
        parse_digest("sha384:" + "a" * 96)
    doc = {"mediaType": mt.OCI_MANIFEST, "config": {"digest": D1, "size": 1},
           "layers": [{"digest": "sha384:" + "a" * 96, "size": 1}]}
    with pytest.raises(InvalidManifest, match="unsupported digest algorithm"):
        parse_manifest(json.dumps(doc).encode())


def test_names_and_tags_with_a_trailing_newline_are_invalid() -> None:
    assert not is_tag("v1\n") and not is_repository_name("a/b\n")
    assert not is_tag("../x") and not is_tag("../../../../v2/evil/marker/manifests/x")


def test_sha512_blobs_are_parsed() -> None:
    doc = {"mediaType": mt.OCI_MANIFEST, "config": {"digest": D1, "size": 1},
           "layers": [{"digest": D512, "size": 9, "mediaType": "l"}]}
    parsed = parse_manifest(json.dumps(doc).encode())
    assert [d.digest for _, d in parsed.linked_blobs] == [D1, D512]


def test_foreign_layers_are_parsed_but_not_linked() -> None:
    doc = {"mediaType": mt.DOCKER_MANIFEST, "config": {"digest": D1, "size": 1},
           "layers": [
               {"digest": D2, "size": 5, "mediaType": "l"},
               {"digest": "sha256:" + "3" * 64, "size": 7, "urls": ["https://x.invalid/l"],
                "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"},
               {"digest": "sha256:" + "4" * 64, "size": 7,
                "mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"},
               {"digest": "sha256:" + "6" * 64, "size": 7, "mediaType": "l",
                "urls": ["https://x.invalid/l"]}]}
    parsed = parse_manifest(json.dumps(doc).encode())
    assert len(parsed.blobs) == 5
    assert [(pos, d.digest) for pos, d in parsed.linked_blobs] == [(-1, D1), (0, D2)]
    assert [d.foreign for d in parsed.layers] == [False, True, True, True]


def test_subject_and_artifact_type() -> None:
    artifact = {"mediaType": mt.OCI_MANIFEST, "artifactType": "application/vnd.example.sig",
                "config": {"digest": D1, "size": 2,
                           "mediaType": "application/vnd.oci.empty.v1+json"},
                "layers": [], "subject": {"digest": D2, "size": 10, "mediaType": mt.OCI_MANIFEST}}
    parsed = parse_manifest(json.dumps(artifact).encode())
    assert parsed.subject is not None and parsed.subject.digest == D2
    assert parsed.artifact_type == "application/vnd.example.sig"
    del artifact["artifactType"], artifact["subject"]
    parsed = parse_manifest(json.dumps(artifact).encode())
    assert parsed.artifact_type == "application/vnd.oci.empty.v1+json"  # the config's type
    assert parsed.subject is None
    index = {"mediaType": mt.OCI_INDEX, "manifests": [], "artifactType": "a/b",
             "subject": {"digest": D2, "size": 10}}
    parsed = parse_manifest(json.dumps(index).encode())
    assert parsed.artifact_type == "a/b" and parsed.subject is not None


def test_a_deeply_nested_document_is_malformed_not_a_crash() -> None:
    with pytest.raises(InvalidManifest, match="nested too deeply"):
        parse_manifest(b"[" * 200_000)
