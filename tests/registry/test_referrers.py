"""GET /v2/<name>/referrers/<digest>: an OCI index of the version's manifests with that subject."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy.orm import Session

from lazyreg.oci import mediatypes as mt
from lazyreg.registry import referrers
from tests.registry.conftest import (
    Client,
    Stored,
    add_list,
    add_manifest,
    add_repository,
    artifact,
    error_code,
    fetch,
    image,
    set_version,
    sha256,
    write,
)

SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM = "application/spdx+json"


async def index(client: Client, path: str) -> tuple[dict[str, Any], Any]:
    status, headers, body = await fetch(client, path)
    assert status == 200, body
    assert headers["Content-Type"] == mt.OCI_INDEX
    data = json.loads(body)
    assert (data["schemaVersion"], data["mediaType"]) == (2, mt.OCI_INDEX)
    return data, headers


@pytest.fixture
async def signed(client: Client) -> tuple[Client, Stored, dict[str, Stored]]:
    """app:v1 with a signature and an SBOM; a second image with its own signature."""
    def fill(session: Session) -> tuple[Stored, dict[str, Stored]]:
        add_repository(session, "app")
        subject = add_manifest(session, image("subject"))
        other = add_manifest(session, image("other"))
        made = {
            "sig": add_manifest(session, artifact("sig", subject, SIG,
                                                  {"dev.cosignproject.cosign/signature": "MEUC"})),
            "sbom": add_manifest(session, artifact("sbom", subject, SBOM,
                                                   {"org.opencontainers.image.created": "2024"})),
            "other-sig": add_manifest(session, artifact("other-sig", other, SIG)),
        }
        set_version(session, "app", {"v1": subject, "v2": other}, untagged=made.values())
        return subject, made
    subject, made = await write(client, fill)
    return client, subject, made


async def test_lists_every_referrer_with_type_and_annotations(
        signed: tuple[Client, Stored, dict[str, Stored]]) -> None:
    client, subject, made = signed
    data, headers = await index(client, f"/v2/app/referrers/{subject.digest}")
    expected = sorted([
        {"mediaType": mt.OCI_MANIFEST, "digest": made["sig"].digest,
         "size": len(made["sig"].data), "artifactType": SIG,
         "annotations": {"dev.cosignproject.cosign/signature": "MEUC"}},
        {"mediaType": mt.OCI_MANIFEST, "digest": made["sbom"].digest,
         "size": len(made["sbom"].data), "artifactType": SBOM,
         "annotations": {"org.opencontainers.image.created": "2024"}},
    ], key=lambda d: d["digest"])
    assert data["manifests"] == expected
    assert "OCI-Filters-Applied" not in headers


async def test_artifact_type_filter(signed: tuple[Client, Stored, dict[str, Stored]]) -> None:
    client, subject, made = signed
    for given in (quote(SIG, safe=""), SIG):  # "+" encoded, and left as is by a hand
        data, headers = await index(client,
                                    f"/v2/app/referrers/{subject.digest}?artifactType={given}")
        assert [d["digest"] for d in data["manifests"]] == [made["sig"].digest]
        assert headers["OCI-Filters-Applied"] == "artifactType"
    data, headers = await index(client,
                                f"/v2/app/referrers/{subject.digest}?artifactType=text/none")
    assert data["manifests"] == []
    assert headers["OCI-Filters-Applied"] == "artifactType"


async def test_unknown_subject_has_an_empty_index(
        signed: tuple[Client, Stored, dict[str, Stored]]) -> None:
    client, _, _ = signed
    data, _ = await index(client, f"/v2/app/referrers/{sha256(b'nothing')}")
    assert data["manifests"] == []


async def test_only_referrers_in_the_served_version(client: Client) -> None:
    def fill(session: Session) -> tuple[Stored, Stored, Stored]:
        add_repository(session, "app")
        add_repository(session, "elsewhere")
        subject = add_manifest(session, image("subject"))
        old = add_manifest(session, artifact("old", subject, SIG))
        new = add_manifest(session, artifact("new", subject, SIG))
        foreign = add_manifest(session, artifact("foreign", subject, SBOM))
        set_version(session, "app", {"v1": subject}, untagged=[old])
        set_version(session, "app", {"v1": subject}, untagged=[new])
        set_version(session, "elsewhere", {"v1": subject}, untagged=[foreign])
        return old, new, foreign
    _, new, foreign = await write(client, fill)
    subject = sha256(json.dumps(image("subject"), indent=2).encode())
    data, _ = await index(client, f"/v2/app/referrers/{subject}")
    assert [d["digest"] for d in data["manifests"]] == [new.digest]
    data, _ = await index(client, f"/v2/elsewhere/referrers/{subject}")
    assert [d["digest"] for d in data["manifests"]] == [foreign.digest]


async def test_index_referrers_and_type_from_the_config(client: Client) -> None:
    """artifactType falls back to the config's media type; an index can be a referrer."""
    def fill(session: Session) -> tuple[Stored, Stored, Stored]:
        add_repository(session, "app")
        subject = add_manifest(session, image("subject"))
        doc = image("attestation", subject={"mediaType": mt.OCI_MANIFEST,
                                            "digest": subject.digest, "size": 1})
        doc["config"]["mediaType"] = "application/vnd.in-toto+json"
        by_config = add_manifest(session, doc)
        listed = add_list(session, {("linux", "amd64"): add_manifest(session, image("x"))})
        index_doc = json.loads(listed.data)
        index_doc.update(artifactType="application/x-bundle",
                         subject={"mediaType": mt.OCI_MANIFEST, "digest": subject.digest,
                                  "size": 1})
        as_index = add_manifest(session, index_doc, mt.OCI_INDEX)
        set_version(session, "app", {"v1": subject}, untagged=[by_config, as_index])
        return subject, by_config, as_index
    subject, by_config, as_index = await write(client, fill)
    data, _ = await index(client, f"/v2/app/referrers/{subject.digest}")
    got = {d["digest"]: (d["mediaType"], d["artifactType"]) for d in data["manifests"]}
    assert got == {by_config.digest: (mt.OCI_MANIFEST, "application/vnd.in-toto+json"),
                   as_index.digest: (mt.OCI_INDEX, "application/x-bundle")}


async def test_pages_are_bounded_in_count_and_bytes(
        client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    def fill(session: Session) -> Stored:
        add_repository(session, "app")
        subject = add_manifest(session, image("subject"))
        made = [add_manifest(session, artifact(f"a{i}", subject, SIG, {"n": "x" * 300 * i}))
                for i in range(7)]
        set_version(session, "app", {"v1": subject}, untagged=made)
        return subject
    subject = await write(client, fill)
    everything, _ = await index(client, f"/v2/app/referrers/{subject.digest}")
    assert len(everything["manifests"]) == 7

    monkeypatch.setattr(referrers, "MAX_REFERRERS", 3)
    monkeypatch.setattr(referrers, "MAX_INDEX_BYTES", 1500)
    seen: list[dict[str, Any]] = []
    path = f"/v2/app/referrers/{subject.digest}?artifactType={quote(SIG, safe='')}"
    for _ in range(10):
        data, headers = await index(client, path)
        page = data["manifests"]
        assert 1 <= len(page) <= 3
        # Over the byte budget only when one descriptor alone is bigger.
        assert len(page) == 1 or len(json.dumps(page)) <= 1500
        seen += page
        if "Link" not in headers:
            break
        link = headers["Link"]
        assert "artifactType=" in link  # the filter carries over
        path = link[1:link.index(">")]
    assert seen == everything["manifests"]


BAD_INPUT = [
    ("/v2/app/referrers/sha256:abc", "DIGEST_INVALID"),
    ("/v2/app/referrers/sha256:" + "a" * 64 + "%0a", "DIGEST_INVALID"),
    ("/v2/app/referrers/SHA256:" + "a" * 64, "DIGEST_INVALID"),
    ("/v2/app/referrers/latest", "DIGEST_INVALID"),
    ("/v2/app/referrers/sha256:" + "a" * 64 + "?last=nope", "DIGEST_INVALID"),
    ("/v2/app/referrers/sha256:" + "a" * 64 + "?artifactType=%00", "UNSUPPORTED"),
    ("/v2/app/referrers/sha256:" + "a" * 64 + "?artifactType=not-a-type", "UNSUPPORTED"),
    ("/v2/app/referrers/sha256:" + "a" * 64 + "?artifactType=" + "a/" + "b" * 300,
     "UNSUPPORTED"),
    ("/v2/nothing/referrers/sha256:" + "a" * 64, "NAME_UNKNOWN"),
]


async def test_bad_input_is_a_4xx(signed: tuple[Client, Stored, dict[str, Stored]]) -> None:
    client, _, _ = signed
    for path, code in BAD_INPUT:
        status, _, body = await fetch(client, path)
        assert (status, error_code(body)) == (400 if code != "NAME_UNKNOWN" else 404, code), path
