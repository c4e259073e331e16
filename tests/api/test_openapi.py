"""openapi.json documents every registered route from the same route table."""

from __future__ import annotations

from typing import Any

from lazyreg.api.routes import ROUTES
from tests.api.conftest import Client, get


async def test_document_lists_every_route(client: Client) -> None:
    doc = await get(client, "openapi.json")
    assert doc["openapi"].startswith("3.1")
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert documented == {(r.method, r.path) for r in ROUTES}
    for required in [("POST", "/api/v1/remotes/"), ("PUT", "/api/v1/remotes/{name}/"),
                     ("POST", "/api/v1/repositories/{name}/sync/"),
                     ("GET", "/api/v1/repositories/{name}/versions/{number}/"),
                     ("GET", "/api/v1/content/blobs/"), ("GET", "/api/v1/artifacts/"),
                     ("GET", "/api/v1/tasks/{id}/"), ("GET", "/api/v1/status/"),
                     ("GET", "/api/v1/openapi.json")]:
        assert required in documented


def resolve(doc: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    name = ref["$ref"].rsplit("/", 1)[-1]
    schema: dict[str, Any] = doc["components"]["schemas"][name]
    return schema


# Operations that take no request body: everything they need is in the path.
BODYLESS = {("post", "/api/v1/repositories/{name}/reclaim/"), ("post", "/api/v1/check/verify/")}


async def test_operations_have_summaries_and_schemas(client: Client) -> None:
    doc = await get(client, "openapi.json")
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["summary"], (method, path)
            assert op["responses"], (method, path)
            if method in ("post", "put", "patch") and (method, path) not in BODYLESS:
                body = op["requestBody"]["content"]["application/json"]["schema"]
                assert resolve(doc, body)["properties"]
    create = doc["paths"]["/api/v1/remotes/"]["post"]
    body = resolve(doc, create["requestBody"]["content"]["application/json"]["schema"])
    assert "password" in body["properties"]
    assert set(body["required"]) == {"name", "url"}
    out = resolve(doc, create["responses"]["201"]["content"]["application/json"]["schema"])
    assert "password" not in out["properties"]
    assert "has_password" in out["properties"]
    patch = doc["paths"]["/api/v1/remotes/{name}/"]["patch"]
    partial = resolve(doc, patch["requestBody"]["content"]["application/json"]["schema"])
    assert "required" not in partial
    sync = doc["paths"]["/api/v1/repositories/{name}/sync/"]["post"]
    assert "202" in sync["responses"]
    listing = doc["paths"]["/api/v1/remotes/"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"limit", "offset"}
    page = resolve(doc, listing["responses"]["200"]["content"]["application/json"]["schema"])
    assert set(page["properties"]) == {"count", "next", "previous", "results"}
    version = doc["paths"]["/api/v1/repositories/{name}/versions/{number}/"]["get"]
    assert [p["name"] for p in version["parameters"]] == ["name", "number"]


async def test_parameters_are_typed_and_bounded(client: Client) -> None:
    doc = await get(client, "openapi.json")
    version = doc["paths"]["/api/v1/repositories/{name}/versions/{number}/"]["get"]
    number = {p["name"]: p["schema"] for p in version["parameters"]}["number"]
    assert number == {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
    listing = doc["paths"]["/api/v1/tasks/"]["get"]
    query = {p["name"]: p["schema"] for p in listing["parameters"]}
    assert query["limit"]["minimum"] == 1 and query["offset"]["maximum"] == 2**31 - 1
    assert query["state"]["enum"] == ["waiting", "running", "completed", "failed", "canceled"]
    remote = doc["components"]["schemas"]["RemoteIn"]["properties"]
    assert remote["name"]["maxLength"] == 255 and remote["name"]["pattern"]
    assert remote["tls_verify"] == {"default": True, "title": "Tls Verify", "type": "boolean"}
    pinned = doc["components"]["schemas"]["DistributionIn"]["properties"]["repository_version"]
    assert pinned["anyOf"][0]["maximum"] == 2**31 - 1


async def test_errors_and_links_are_documented(client: Client) -> None:
    doc = await get(client, "openapi.json")
    create = doc["paths"]["/api/v1/remotes/"]["post"]["responses"]
    assert {"400", "408", "409", "413", "507"} <= set(create)
    delete = doc["paths"]["/api/v1/remotes/{name}/"]["delete"]
    assert {"409", "507"} <= set(delete["responses"])
    assert [p["name"] for p in delete["parameters"]] == ["name", "force"]
    assert "507" not in doc["paths"]["/api/v1/remotes/"]["get"]["responses"]
    links = create["201"]["links"]
    assert links["remotes_show"] == {"operationId": "remotes_show",
                                     "parameters": {"name": "$response.body#/name"}}
    assert links["repositories_sync"]["requestBody"] == {"remote": "$response.body#/name"}
    repository = doc["paths"]["/api/v1/repositories/"]["post"]["responses"]["201"]["links"]
    assert repository["distributions_create"]["requestBody"] == {
        "repository": "$response.body#/name"}
    sync = doc["paths"]["/api/v1/repositories/{name}/sync/"]["post"]["responses"]["202"]
    assert sync["links"]["tasks_show"]["parameters"] == {"id": "$response.body#/id"}
