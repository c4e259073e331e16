"""An in-process application on a fresh SQLite database, and a way to fill it through the models.

The rows are what a sync writes: manifests with their exact bytes (the digest
is their sha256), lists with their children, tags, referrers with their
subject and artifactType, and versions as membership ranges.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict
from sqlalchemy import select
from sqlalchemy.orm import Session

from lazyreg.app import create_app
from lazyreg.config import Settings
from lazyreg.db import content as q
from lazyreg.db.engine import Database
from lazyreg.db.models import (
    Content,
    Distribution,
    Manifest,
    ManifestChild,
    Repository,
    RepositoryVersion,
    Tag,
)
from lazyreg.oci import mediatypes as mt
from lazyreg.state import STATE
from tests.sqlite import seeded

Client = TestClient[Any, Any]
T = TypeVar("T")
EMPTY = {"tags": 0, "manifests": 0, "blobs": 0}


@pytest.fixture
async def client(tmp_path: Path, template: Path) -> AsyncIterator[Client]:
    app = create_app(Settings(data_dir=seeded(tmp_path, template), upstream_retries=0,
                              upstream_backoff=0))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def write(client: Client, fn: Callable[[Session], T]) -> T:
    db: Database = client.app[STATE].services.db
    return await db.write(fn)


@dataclass(frozen=True)
class Stored:
    id: int
    digest: str
    data: bytes
    media_type: str


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image(name: str, **extra: Any) -> dict[str, Any]:
    """An OCI image manifest document, distinct by `name`."""
    config = sha256(f"config:{name}".encode())
    layer = sha256(f"layer:{name}".encode())
    return {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config, "size": 100},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": layer, "size": 1000}], **extra}


def artifact(name: str, subject: Stored, artifact_type: str,
             annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """An OCI 1.1 artifact manifest (a signature, an SBOM) whose subject is `subject`."""
    doc = image(name, artifactType=artifact_type,
                subject={"mediaType": subject.media_type, "digest": subject.digest,
                         "size": len(subject.data)})
    if annotations:
        doc["annotations"] = annotations
    return doc


def add_manifest(session: Session, doc: dict[str, Any] | bytes,
                 media_type: str = mt.OCI_MANIFEST,
                 children: Iterable[tuple[Stored, str, str]] = ()) -> Stored:
    """A manifest row with its bytes, as a sync records it (subject and artifactType too)."""
    data = doc if isinstance(doc, bytes) else json.dumps(doc, indent=2).encode()
    digest = sha256(data)
    found = session.scalar(select(Manifest.id).where(Manifest.digest == digest))
    if found is not None:
        return Stored(found, digest, data, media_type)
    parsed = doc if isinstance(doc, dict) else {}
    subject = parsed.get("subject", {}).get("digest")
    artifact_type = parsed.get("artifactType") or (
        parsed.get("config", {}).get("mediaType") if subject else None)
    content = Content(kind="manifest")
    session.add(content)
    session.flush()
    session.add(Manifest(id=content.id, digest=digest, media_type=media_type, size=len(data),
                         data=data, subject_digest=subject, artifact_type=artifact_type))
    for position, (child, os, arch) in enumerate(children):
        session.add(ManifestChild(list_id=content.id, position=position, child_id=child.id,
                                  os=os, architecture=arch))
    session.flush()
    return Stored(content.id, digest, data, media_type)


def add_list(session: Session, platforms: dict[tuple[str, str], Stored],
             media_type: str = mt.OCI_INDEX) -> Stored:
    doc = {"schemaVersion": 2, "mediaType": media_type, "manifests": [
        {"mediaType": child.media_type, "digest": child.digest, "size": len(child.data),
         "platform": {"os": os, "architecture": arch}}
        for (os, arch), child in platforms.items()]}
    return add_manifest(session, doc, media_type,
                        [(child, os, arch) for (os, arch), child in platforms.items()])


def add_tag(session: Session, name: str, manifest: Stored) -> int:
    found = session.scalar(select(Tag.id).where(Tag.name == name, Tag.manifest_id == manifest.id))
    if found is not None:
        return found
    content = Content(kind="tag")
    session.add(content)
    session.flush()
    session.add(Tag(id=content.id, name=name, manifest_id=manifest.id))
    return content.id


def add_repository(session: Session, name: str, base_path: str | None = None,
                   pinned: int | None = None) -> Repository:
    """A repository at version 0, and a distribution serving it at `base_path`."""
    repository = Repository(name=name, description="", latest_version=0)
    session.add(repository)
    session.flush()
    version = RepositoryVersion(repository_id=repository.id, number=0,
                                content_counts=dict(EMPTY), added_counts=dict(EMPTY),
                                removed_counts=dict(EMPTY))
    session.add(version)
    session.flush()
    session.add(Distribution(name=name, base_path=base_path or name,
                             repository_id=repository.id))
    session.flush()
    return repository


def set_version(session: Session, name: str, tags: dict[str, Stored],
                untagged: Iterable[Stored] = ()) -> int:
    """Write the next version of `name`: exactly these tags, their closure and `untagged`."""
    repository = session.scalars(select(Repository).where(Repository.name == name)).one()
    roots = [m.id for m in tags.values()] + [m.id for m in untagged]
    manifests, blobs = q.manifest_closure(session, roots)
    ids = manifests | blobs | {add_tag(session, tag, m) for tag, m in tags.items()}
    version = q.create_version(session, repository, ids)
    assert version is not None
    return version.number


async def fetch(client: Client, path: str, method: str = "GET",
                headers: dict[str, str] | None = None) -> tuple[int, CIMultiDict[str], bytes]:
    async with client.request(method, path, headers=headers or {}) as resp:
        return resp.status, resp.headers.copy(), await resp.read()


def error_code(body: bytes) -> str:
    code: str = json.loads(body)["errors"][0]["code"]
    return code
