"""A database, storage and services for fetchers that stand for server processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest

from lazyreg.auth.secrets import SecretBox
from lazyreg.config import Settings
from lazyreg.db.engine import Database
from lazyreg.fetch import Fetcher
from lazyreg.services import Services
from lazyreg.storage.base import BlobStore
from lazyreg.upstream.pool import UpstreamPool
from lazyreg.worker import WorkerId
from tests.sqlite import fresh_database


@pytest.fixture
def db(template: Path, tmp_path: Path) -> Iterator[Database]:
    database = fresh_database(template, tmp_path)
    yield database
    database.dispose()


def services(tmp_path: Path, db: Database, store: BlobStore, worker: WorkerId | None = None,
             **settings: Any) -> Services:
    return Services(Settings(data_dir=tmp_path, **settings), db, store,
                    UpstreamPool(cast(aiohttp.ClientSession, None)),
                    SecretBox.from_master(b"k" * 32, "tests"), worker or WorkerId.current())


def fetcher(tmp_path: Path, db: Database, store: BlobStore, worker: WorkerId | None = None,
            **settings: Any) -> Fetcher:
    return Fetcher(services(tmp_path, db, store, worker, **settings))
