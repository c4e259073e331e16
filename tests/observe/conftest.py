"""An in-process application on a fresh SQLite database, as the API tests use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from lazyreg.app import create_app
from lazyreg.config import Settings

Client = TestClient[Any, Any]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    app = create_app(Settings(data_dir=tmp_path, upstream_retries=0, upstream_backoff=0))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client
