"""The layout's names and index.json: what an import accepts, and what it refuses."""

from __future__ import annotations

import json

import pytest

from lazyreg.transfer.layout import (
    BadLayout,
    IndexEntry,
    blob_path,
    clean_name,
    digest_of_path,
    index_document,
    parse_index,
)

HEX = "ab" * 32


def test_blob_paths_round_trip_and_other_names_are_no_blobs() -> None:
    assert blob_path(f"sha256:{HEX}") == f"blobs/sha256/{HEX}"
    assert digest_of_path(f"blobs/sha256/{HEX}") == f"sha256:{HEX}"
    assert digest_of_path(f"blobs/sha512/{'c' * 128}") == f"sha512:{'c' * 128}"
    for name in (f"blobs/md5/{HEX}", f"blobs/sha256/{HEX[:-1]}", f"blobs/sha256/{HEX.upper()}",
                 "index.json", f"x/blobs/sha256/{HEX}", f"blobs/sha256/{HEX}/x"):
        assert digest_of_path(name) is None, name


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/passwd", "a\\..\\b", "a\x00b"])
def test_names_that_escape_the_layout_are_refused(name: str) -> None:
    with pytest.raises(BadLayout):
        clean_name(name)


def test_harmless_names_are_cleaned() -> None:
    assert clean_name("./blobs/sha256/") == "blobs/sha256"
    assert clean_name("index.json") == "index.json"


def test_index_round_trip_keeps_tags_and_untagged_entries() -> None:
    entries = [IndexEntry(f"sha256:{HEX}", "application/vnd.oci.image.manifest.v1+json", 12,
                          "v1"),
               IndexEntry(f"sha256:{'cd' * 32}", "application/vnd.oci.image.index.v1+json", 3,
                          None)]
    doc = index_document(entries)
    assert json.loads(doc)["manifests"][0]["annotations"] == {
        "org.opencontainers.image.ref.name": "v1"}
    assert parse_index(doc) == entries


@pytest.mark.parametrize("doc, message", [
    (b"not json", "not valid JSON"),
    (b'{"manifests": 3}', "no 'manifests' array"),
    (b'{"manifests": [{"digest": "sha256:x", "size": 1, "mediaType": "m"}]}', "invalid digest"),
    (json.dumps({"manifests": [{"digest": f"sha256:{HEX}", "size": -1, "mediaType": "m"}]}
                ).encode(), "invalid size"),
    (json.dumps({"manifests": [{"digest": f"sha256:{HEX}", "size": 1}]}).encode(),
     "no mediaType"),
])
def test_a_bad_index_is_refused_naming_what_is_wrong(doc: bytes, message: str) -> None:
    with pytest.raises(BadLayout, match=message):
        parse_index(doc)
