"""The read side's queries on PostgreSQL, with a database collation that is not bytewise.

A production PostgreSQL often sorts text by a language's rules (`en-US`:
case-insensitive first, punctuation ignored). Paging by `last` must still
follow one order, the bytewise one, so that every name comes exactly once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.orm import Session

from lazyreg.app import create_app
from lazyreg.config import Settings
from tests.postgres import PostgresServer
from tests.registry.conftest import (
    Client,
    add_manifest,
    add_repository,
    artifact,
    fetch,
    image,
    set_version,
    write,
)
from tests.rig import run

pytestmark = pytest.mark.postgres

TAGS = ["Z", "a-b", "ab", "a_c", "B", "b", "v1.10", "v1.9", "v1-rc", "10", "9"]


@pytest.fixture
async def pg_client(postgres: PostgresServer, tmp_path: Path) -> AsyncIterator[Client]:
    name = "t_" + uuid.uuid4().hex[:12]
    run([str(postgres.bindir / "psql"), "-h", "127.0.0.1", "-p", str(postgres.port),
         "-U", "lazyreg", "-d", "postgres", "-qc",
         f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu"
         " ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"])
    app = create_app(Settings(data_dir=tmp_path, database_url=postgres.url(name),
                              upstream_retries=0, upstream_backoff=0))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_tags_catalog_and_referrers_on_postgres(pg_client: Client) -> None:
    def fill(session: Session) -> tuple[str, str]:
        add_repository(session, "app")
        for name in TAGS[:4]:
            add_repository(session, f"r-{name.lower()}", base_path=f"x/{name.lower()}")
        subject = add_manifest(session, image("subject"))
        sig = add_manifest(session, artifact("sig", subject, "application/x-sig"))
        set_version(session, "app", dict.fromkeys(TAGS, subject), untagged=[sig])
        return subject.digest, sig.digest
    subject, sig = await write(pg_client, fill)

    seen: list[str] = []
    query = "?n=3"
    for _ in range(10):
        status, headers, body = await fetch(pg_client, f"/v2/app/tags/list{query}")
        assert status == 200, body
        seen += json.loads(body)["tags"]
        if "Link" not in headers:
            break
        link = headers["Link"]
        query = "?" + link[link.index("?") + 1:link.index(">")]
    assert seen == sorted(TAGS)  # Python's order is bytewise

    status, _, body = await fetch(pg_client, "/v2/_catalog?last=x/a-b")
    assert json.loads(body)["repositories"] == sorted(
        p for p in ["app", "x/z", "x/a-b", "x/ab", "x/a_c"] if p > "x/a-b")

    status, _, body = await fetch(pg_client, "/v2/app/tags/list?last=a%00")
    assert status == 400  # PostgreSQL refuses NUL in text: never let it reach a query

    status, _, body = await fetch(pg_client, f"/v2/app/referrers/{subject}")
    assert [d["digest"] for d in json.loads(body)["manifests"]] == [sig]
    status, _, body = await fetch(pg_client, "/v2/app/manifests/v1.9")
    assert (status, json.loads(body)["schemaVersion"]) == (200, 2)
