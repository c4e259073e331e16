"""The request hook in a real app: ids sent back and logged, counted by route template."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.orm import Session

from lazyreg.app import create_app
from lazyreg.config import Settings
from lazyreg.db.models import Artifact
from lazyreg.observe.keys import METRICS
from lazyreg.state import STATE
from tests.observe.conftest import Client
from tests.observe.scrape import Scrape, parse


async def scrape(client: Client) -> Scrape:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse(await resp.text())


@pytest.mark.parametrize("path", ["/api/v1/status/", "/api/v1/repositories/nope/",
                                  "/v2/nope/manifests/v1", "/no/such/route", "/healthz", "/"])
async def test_every_response_carries_the_id_its_log_line_has(
        client: Client, caplog: pytest.LogCaptureFixture, path: str) -> None:
    caplog.set_level(logging.DEBUG, "lazyreg.access")
    resp = await client.get(path)
    await resp.read()
    rid = resp.headers["X-Request-Id"]
    assert len(rid) == 32
    lines = [r for r in caplog.records if r.name == "lazyreg.access"]
    assert len(lines) == 1
    assert lines[0].request_id == rid  # type: ignore[attr-defined]
    assert f"GET {path} {resp.status} " in lines[0].getMessage()


async def test_a_sane_client_id_is_kept_and_a_hostile_one_replaced(client: Client) -> None:
    resp = await client.get("/api/v1/status/", headers={"X-Request-Id": "lb-7f3a.1"})
    assert resp.headers["X-Request-Id"] == "lb-7f3a.1"
    resp = await client.get("/api/v1/status/", headers={"X-Request-Id": "a" * 65})
    assert resp.headers["X-Request-Id"] != "a" * 65
    resp = await client.get("/api/v1/status/", headers={"X-Request-Id": "x\ty"})
    assert len(resp.headers["X-Request-Id"]) == 32


async def test_requests_are_counted_by_route_template_never_by_path(client: Client) -> None:
    for _ in range(3):
        await client.get("/v2/team/app/manifests/v1")  # 404: no such distribution
    await client.get("/api/v1/repositories/some-repo/")
    await client.get("/no/such/route")
    await client.post("/v2/")  # no POST route: 405
    s = await scrape(client)
    assert s.value("lazyreg_http_requests_total", method="GET",
                   route="/v2/{name}/manifests/{reference}", status="404") == 3
    assert s.value("lazyreg_http_request_duration_seconds_count",
                   route="/v2/{name}/manifests/{reference}") == 3
    assert s.value("lazyreg_http_requests_total", route="/api/v1/repositories/{name}/",
                   status="404") == 1
    assert s.value("lazyreg_http_requests_total", route="unmatched", status="404") == 1
    assert s.value("lazyreg_http_requests_total", method="POST", status="405") == 1
    values = {v for labels in s.labels("lazyreg_http_requests_total") for v in labels.values()}
    assert not any("team" in v or "some-repo" in v or "no/such" in v for v in values)


async def test_each_app_exports_its_own(tmp_path: Path) -> None:
    a = create_app(Settings(data_dir=tmp_path / "a"))
    b = create_app(Settings(data_dir=tmp_path / "b"))
    async with TestClient(TestServer(a)) as ca, TestClient(TestServer(b)) as cb:
        for _ in range(4):
            await ca.get("/api/v1/status/")
        sa, sb = await scrape(ca), await scrape(cb)
    route = "/api/v1/status/"
    assert sa.value("lazyreg_http_requests_total", route=route) == 4
    assert sb.value("lazyreg_http_requests_total", route=route) == 0


async def test_request_metrics_off_counts_no_request(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, request_metrics=False))
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/api/v1/status/")
        assert "X-Request-Id" in resp.headers  # ids and logs stay
        s = await scrape(client)
    assert s.value("lazyreg_http_requests_total") == 0


async def test_stored_bytes_come_from_the_database_cached_a_few_seconds(client: Client) -> None:
    db = client.app[STATE].services.db

    def add(name: str, size: int, kind: str) -> Callable[[Session], None]:
        return lambda session: session.add(Artifact(digest=f"sha256:{name:0>64}", size=size,
                                                    kind=kind, location=name))

    await db.write(add("a", 1000, "layer"))
    await db.write(add("b", 24, "config"))
    s = await scrape(client)
    assert s.value("lazyreg_storage_bytes", kind="layer") == 1000
    assert s.value("lazyreg_storage_bytes", kind="config") == 24
    assert s.value("lazyreg_storage_bytes", kind="manifest") == 0
    assert s.value("lazyreg_storage_artifacts") == 2
    await db.write(add("c", 5000, "layer"))
    assert (await scrape(client)).value("lazyreg_storage_bytes", kind="layer") == 1000  # cached
    client.app[METRICS].storage_checked = float("-inf")  # as if STORAGE_TTL had passed
    assert (await scrape(client)).value("lazyreg_storage_bytes", kind="layer") == 6000


async def test_the_traceback_of_an_unhandled_error_carries_the_request_id(
        tmp_path: Path, template: Path) -> None:
    """aiohttp logs it after our middlewares ended ("Error handling request"): the id must
    still be set then (issue 20: the traceback line had request_id null)."""
    from aiohttp import web

    from lazyreg.observe.logs import RequestIdFilter
    from tests.sqlite import seeded

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app = create_app(Settings(data_dir=seeded(tmp_path, template)))
    app.router.add_get("/broken", broken)
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)
    keep = Keep()
    keep.addFilter(RequestIdFilter())
    logger = logging.getLogger("aiohttp.server")
    logger.addHandler(keep)
    try:
        async with TestClient(TestServer(app)) as client:
            resp = await client.get("/broken", headers={"X-Request-Id": "req-tb-1"})
            assert resp.status == 500
    finally:
        logger.removeHandler(keep)
    tracebacks = [r for r in seen if r.exc_info]
    assert tracebacks, [r.getMessage() for r in seen]
    assert all(r.request_id == "req-tb-1" for r in tracebacks)  # type: ignore[attr-defined]
