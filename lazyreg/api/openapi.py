"""The OpenAPI 3.1 document, generated from the route table and the pydantic schemas.

Precise enough for a fuzzer (schemathesis) to make meaningful requests: path
and query parameters carry their types and bounds, every error status a route
can answer is listed, and links say which response names the resource that
another operation needs (a created remote's name, a sync's task id).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

import lazyreg
from lazyreg.api.limits import MAX_INT
from lazyreg.api.routing import Handler, Query, Route
from lazyreg.api.schemas import ErrorOut, TaskOut
from lazyreg.oci.names import MAX_NAME_LENGTH, RESOURCE_NAME_RE

REF_TEMPLATE = "#/components/schemas/{model}"
PATH_PARAM = re.compile(r"{(\w+)(?::[^}]*)?}")
ERRORS = {
    "400": "Invalid input; `field` names the offending field",
    "401": "No or bad credentials (with --auth on); see WWW-Authenticate",
    "403": "The user's role does not allow it",
    "404": "No such resource",
    "409": "Conflicts with an existing resource",
    "429": "Too many failed logins from this address or for this account; see Retry-After",
}
BODY_ERRORS = {
    "408": "The request body did not arrive in time",
    "413": "The request body is too large",
}
WRITE_ERRORS = {
    "415": "The request has a body that is not application/json",
    "507": "The server's disk (or database) is full; nothing was changed",
}
PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "name": {"type": "string", "pattern": RESOURCE_NAME_RE.pattern,
             "maxLength": MAX_NAME_LENGTH},
    "number": {"type": "integer", "minimum": 0, "maximum": MAX_INT},
    "id": {"type": "string", "format": "uuid"},
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _query_schema(query: Query) -> dict[str, Any]:
    if query.type == "integer":
        return {"type": "integer", "minimum": query.minimum, "maximum": MAX_INT}
    if query.choices:
        return {"type": "string", "enum": list(query.choices)}
    return {"type": query.type}


# A repository's name may hold slashes (percent-encode them in the path).
REPOSITORY_NAME = {"type": "string", "maxLength": MAX_NAME_LENGTH,
                   "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$"}


def _path_schema(route: Route, name: str) -> dict[str, Any]:
    if name == "name" and "/repositories/{name}" in route.path:
        return REPOSITORY_NAME
    return PATH_SCHEMAS.get(name, {"type": "string"})


def _parameters(route: Route) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": _path_schema(route, name)}
        for name in PATH_PARAM.findall(route.path)]
    params += [{"name": q.name, "in": "query", "required": False, "description": q.description,
                "schema": _query_schema(q)} for q in route.query]
    return params


def _links(route: Route, routes: Sequence[Route]) -> dict[str, Any]:
    """What a successful answer of `route` lets a client call next."""
    links: dict[str, Any] = {}
    if route.response is TaskOut and route.method == "POST":
        for target in routes:
            if target.method == "GET" and target.path.endswith("/tasks/{id}/"):
                links[_operation_id(target)] = {"operationId": _operation_id(target),
                                                "parameters": {"id": "$response.body#/id"}}
    if route.method != "POST" or route.status != 201 or route.response is None:
        return links
    # A created resource: the operations on it, and the bodies that name it
    # (a distribution's `repository`, a sync's `remote`).
    item = route.path + "{name}/"
    kind = route.response.__name__.removesuffix("Out").lower()
    for target in routes:
        op = _operation_id(target)
        if target.path.startswith(item):
            links[op] = {"operationId": op, "parameters": {"name": "$response.body#/name"}}
        elif (target.method == "POST" and target.body is not None
              and kind in target.body.model_fields):
            links[op] = {"operationId": op, "requestBody": {kind: "$response.body#/name"}}
    return links


def _operation_id(route: Route) -> str:
    module = route.handler.__module__.rsplit(".", 1)[-1]
    return f"{module}_{route.handler.__name__.strip('_')}"


def _partial(schemas: dict[str, Any], name: str) -> dict[str, Any]:
    """A PATCH body: the create schema with every field optional."""
    patch = f"{name}Patch"
    if patch not in schemas:
        schema = {k: v for k, v in schemas[name].items() if k != "required"}
        schemas[patch] = {**schema, "title": patch}
    return {"$ref": REF_TEMPLATE.format(model=patch)}


def document(routes: Sequence[Route]) -> dict[str, Any]:
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorOut, "serialization")]
    for route in routes:
        if route.body:
            wanted.append((route.body, "validation"))
        if route.response:
            wanted.append((route.response, "serialization"))
    refs, top = models_json_schema(list(dict.fromkeys(wanted)), ref_template=REF_TEMPLATE)
    error = _json(refs[(ErrorOut, "serialization")])

    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        op: dict[str, Any] = {"summary": route.summary, "operationId": _operation_id(route),
                              "tags": [route.tag], "parameters": _parameters(route)}
        if route.body:
            body_ref = refs[(route.body, "validation")]
            if route.method == "PATCH":
                body_ref = _partial(schemas, route.body.__name__)
            op["requestBody"] = {"required": True, "content": _json(body_ref)}
        if route.response:
            ok = {"description": route.summary, "content": _json(
                refs[(route.response, "serialization")])}
        elif route.status == 204:
            ok = {"description": "Deleted"}
        else:
            ok = {"description": route.summary, "content": _json({"type": "object"})}
        links = _links(route, routes)
        if links:
            ok["links"] = links
        errors = dict(ERRORS)
        if route.body:
            errors |= BODY_ERRORS
        if route.method != "GET":
            errors |= WRITE_ERRORS
        op["responses"] = {str(status): ok for status in (route.status, *route.also)}
        op["responses"].update({code: {"description": text, "content": error}
                                for code, text in errors.items()})
        paths.setdefault(route.path, {})[route.method.lower()] = op

    return {
        "openapi": "3.1.0",
        "info": {"title": "lazyreg management API", "version": lazyreg.__version__},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "basic": {"type": "http", "scheme": "basic"},
            "token": {"type": "http", "scheme": "bearer",
                      "description": "A token from POST /api/v1/tokens/"}}},
        "security": [{"basic": []}, {"token": []}],
    }


def handler(routes: Sequence[Route]) -> Handler:
    # The route table is fixed once the application is built: render the document once.
    @cache
    def rendered() -> dict[str, Any]:
        return document(routes)

    async def openapi_document(request: web.Request) -> web.Response:
        return web.json_response(rendered())
    return openapi_document
