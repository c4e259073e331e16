"""A database, a filesystem store and services, and a small world of repositories to fill them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from sqlalchemy import select

from lazyreg.auth.secrets import SecretBox
from lazyreg.config import Settings
from lazyreg.db import content as q
from lazyreg.db.artifacts import NewArtifact, record_artifacts
from lazyreg.db.engine import Database
from lazyreg.db.models import (
    Artifact,
    Blob,
    BlobSource,
    Content,
    Manifest,
    ManifestBlob,
    ManifestChild,
    ManifestSource,
    Remote,
    Repository,
    RepositoryVersion,
    Tag,
)
from lazyreg.services import Services
from lazyreg.storage.filesystem import FilesystemStore
from lazyreg.upstream.pool import UpstreamPool
from lazyreg.worker import WorkerId
from tests.sqlite import fresh_database, migrated_template


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrated_template(tmp_path_factory.mktemp("template"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, template: Path, tmp_path: Path) -> Iterator[Database]:
    """Each test runs on both databases: the queries here are the kind that differ."""
    if request.param == "sqlite":
        database = fresh_database(template, tmp_path)
    else:
        database = Database(request.getfixturevalue("postgres_url"))
        database.migrate()
    yield database
    database.dispose()


def make_services(tmp_path: Path, db: Database, **settings: Any) -> Services:
    store = FilesystemStore(tmp_path / "storage")
    return Services(Settings(data_dir=tmp_path, **settings), db, store,
                    UpstreamPool(cast(aiohttp.ClientSession, None)),
                    SecretBox.from_master(b"k" * 32, "tests"), WorkerId.current())


@dataclass
class Image:
    manifest_id: int
    digest: str
    config: str
    layers: list[str]
    content_ids: set[int] = field(default_factory=set)  # manifest and blobs


@dataclass
class World:
    """Repositories, images and stored blobs, written the way a sync writes them."""

    services: Services

    @property
    def db(self) -> Database:
        return self.services.db

    @property
    def store(self) -> FilesystemStore:
        return cast(FilesystemStore, self.services.store)

    def remote(self, name: str = "up") -> int:
        with self.db.write_session() as s:
            remote = Remote(name=name, url="http://upstream.test", upstream_name="library/x")
            s.add(remote)
            s.flush()
            return remote.id

    def repository(self, name: str, policy: str | None = None, retain: int | None = None
                   ) -> int:
        with self.db.write_session() as s:
            repo = Repository(name=name, latest_version=0, sync_policy=policy,
                              retain_versions=retain)
            s.add(repo)
            s.flush()
            s.add(RepositoryVersion(repository_id=repo.id, number=0))
            return repo.id

    def _content(self, s: Any, kind: str) -> int:
        row = Content(kind=kind)
        s.add(row)
        s.flush()
        return row.id

    def _blob(self, s: Any, data: bytes, remote_id: int | None) -> int:
        digest = sha256(data)
        found = s.scalar(select(Blob.id).where(Blob.digest == digest))
        if found is None:
            found = self._content(s, "blob")
            s.add(Blob(id=found, digest=digest, size=len(data), media_type="x"))
            s.flush()
        if remote_id is not None and s.scalar(select(BlobSource.id).where(
                BlobSource.blob_id == found, BlobSource.remote_id == remote_id)) is None:
            s.add(BlobSource(blob_id=found, remote_id=remote_id, upstream_name="library/x"))
        return int(found)

    def image(self, name: str, layers: list[bytes], remote_id: int | None) -> Image:
        config = json.dumps({"image": name}).encode()
        doc = {"config": sha256(config), "layers": [sha256(layer) for layer in layers]}
        data = json.dumps(doc).encode()
        with self.db.write_session() as s:
            manifest_id = self._content(s, "manifest")
            s.add(Manifest(id=manifest_id, digest=sha256(data), media_type="x", size=len(data),
                           data=data, config_digest=sha256(config)))
            s.flush()
            ids = {manifest_id}
            for position, blob in [(-1, config), *enumerate(layers)]:
                blob_id = self._blob(s, blob, remote_id)
                s.add(ManifestBlob(manifest_id=manifest_id, position=position, blob_id=blob_id))
                ids.add(blob_id)
            if remote_id is not None:
                s.add(ManifestSource(manifest_id=manifest_id, remote_id=remote_id,
                                     upstream_name="library/x"))
        return Image(manifest_id, sha256(data), sha256(config),
                     [sha256(layer) for layer in layers], ids)

    def index(self, children: list[Image]) -> Image:
        data = json.dumps([c.digest for c in children]).encode()
        with self.db.write_session() as s:
            list_id = self._content(s, "manifest")
            s.add(Manifest(id=list_id, digest=sha256(data), media_type="x", size=len(data),
                           data=data))
            s.flush()
            for position, child in enumerate(children):
                s.add(ManifestChild(list_id=list_id, position=position,
                                    child_id=child.manifest_id))
        return Image(list_id, sha256(data), "", [], {list_id})

    def tag(self, name: str, image: Image) -> int:
        with self.db.write_session() as s:
            tag_id = self._content(s, "tag")
            s.add(Tag(id=tag_id, name=name, manifest_id=image.manifest_id))
            return tag_id

    def version(self, repository_id: int, content_ids: set[int]) -> int:
        with self.db.write_session() as s:
            repo = s.get_one(Repository, repository_id)
            made = q.create_version(s, repo, content_ids)
            assert made is not None
            return made.number

    async def stored(self, data: bytes, kind: str = "layer") -> str:
        digest = sha256(data)
        location = await self.store.put(digest, data)
        with self.db.write_session() as s:
            record_artifacts(s, [NewArtifact(digest, len(data), kind, location)])
        return digest

    def artifact_digests(self) -> set[str]:
        with self.db.read_session() as s:
            return set(s.scalars(select(Artifact.digest)))

    async def file_digests(self) -> set[str]:
        return {d async for d in self.store.iter_digests()}


@pytest.fixture
def world(tmp_path: Path, db: Database) -> World:
    return World(make_services(tmp_path, db))
