"""An in-process application on a fresh SQLite database, as the API tests use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from lazyreg.app import create_app
from lazyreg.config import Settings
from tests.sqlite import seeded

Client = TestClient[Any, Any]


@pytest.fixture
async def client(tmp_path: Path, template: Path) -> AsyncIterator[Client]:
    app = create_app(Settings(data_dir=seeded(tmp_path, template), upstream_retries=0,
                              upstream_backoff=0))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client
