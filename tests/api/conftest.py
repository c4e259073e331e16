"""An in-process application on a fresh SQLite database for every test."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlalchemy.orm import Session

from lazyreg.app import create_app
from lazyreg.config import Settings
from lazyreg.db import content as q
from lazyreg.db.engine import Database
from lazyreg.db.models import Artifact, Blob, Content, Manifest, ManifestBlob, Repository, Tag
from lazyreg.oci.mediatypes import OCI_MANIFEST
from lazyreg.state import STATE
from tests.sqlite import seeded

API = "/api/v1"

Client = TestClient[Any, Any]


@pytest.fixture
async def client(tmp_path: Path, template: Path) -> AsyncIterator[Client]:
    # No retries: a test that reaches an upstream expects it to be down, and says so fast.
    app = create_app(Settings(data_dir=seeded(tmp_path, template), upstream_retries=0,
                              upstream_backoff=0))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def post(client: Client, path: str, body: Any, status: int = 201) -> dict[str, Any]:
    resp = await client.post(f"{API}/{path}", json=body)
    data: dict[str, Any] = await resp.json()
    assert resp.status == status, data
    return data


async def get(client: Client, path: str, status: int = 200) -> dict[str, Any]:
    resp = await client.get(f"{API}/{path}")
    data: dict[str, Any] = await resp.json()
    assert resp.status == status, data
    return data


async def patch(client: Client, path: str, body: Any, status: int = 200) -> dict[str, Any]:
    resp = await client.patch(f"{API}/{path}", json=body)
    data: dict[str, Any] = await resp.json()
    assert resp.status == status, data
    return data


async def delete(client: Client, path: str, status: int = 204) -> None:
    resp = await client.delete(f"{API}/{path}")
    assert resp.status == status, await resp.text()


def remote_body(name: str = "hub", **extra: Any) -> dict[str, Any]:
    return {"name": name, "url": "https://registry.example.test",
            "upstream_name": "library/alpine", **extra}


def digest_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def database(client: Client) -> Database:
    db: Database = client.app[STATE].services.db
    return db


def _blob_id(session: Session, digest: str, size: int, cache: dict[str, int]) -> int:
    if digest not in cache:
        found = session.scalar(select(Blob.id).where(Blob.digest == digest))
        if found is None:
            content = Content(kind="blob")
            session.add(content)
            session.flush()
            session.add(Blob(id=content.id, digest=digest, size=size,
                             media_type="application/vnd.oci.image.layer.v1.tar"))
            found = content.id
        cache[digest] = found
    return cache[digest]


def _tag_id(session: Session, name: str, manifest_id: int) -> int:
    found = session.scalar(select(Tag.id).where(Tag.name == name, Tag.manifest_id == manifest_id))
    if found is None:
        content = Content(kind="tag")
        session.add(content)
        session.flush()
        session.add(Tag(id=content.id, name=name, manifest_id=manifest_id))
        found = content.id
    return found


def _seed(session: Session, repository: str, images: dict[str, list[str]]) -> int:
    """Write a new version of `repository` holding exactly `images` (tag -> layer names)."""
    repo = session.scalars(select(Repository).where(Repository.name == repository)).one()
    ids: set[int] = set()
    cache: dict[str, int] = {}
    for tag, layers in images.items():
        digest = digest_of("manifest:" + ",".join(layers))
        manifest_id = session.scalar(select(Manifest.id).where(Manifest.digest == digest))
        if manifest_id is None:
            content = Content(kind="manifest")
            session.add(content)
            session.flush()
            session.add(Manifest(id=content.id, digest=digest, media_type=OCI_MANIFEST,
                                 size=100 + len(layers), data=b"{}"))
            manifest_id = content.id
            for position, layer in enumerate(layers):
                blob_id = _blob_id(session, digest_of(layer), len(layer) * 10, cache)
                session.add(ManifestBlob(manifest_id=manifest_id, position=position,
                                         blob_id=blob_id))
            session.flush()
        manifests, blobs = q.manifest_closure(session, [manifest_id])
        ids |= manifests | blobs | {_tag_id(session, tag, manifest_id)}
    version = q.create_version(session, repo, ids)
    return version.number if version else repo.latest_version


async def seed(client: Client, repository: str, images: dict[str, list[str]]) -> int:
    return await database(client).write(lambda s: _seed(s, repository, images))


async def store(client: Client, names: Iterable[str], kind: str = "layer") -> None:
    """Record artifacts for blobs named like in `seed` (their size is 10 bytes a character)."""
    def insert(session: Session) -> None:
        for name in names:
            session.add(Artifact(digest=digest_of(name), size=len(name) * 10, kind=kind,
                                 location=f"/storage/{name}"))
    await database(client).write(insert)
