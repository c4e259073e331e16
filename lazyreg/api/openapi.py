"""The OpenAPI 3.1 document, generated from the route table and the pydantic schemas."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

import lazyreg
from lazyreg.api.routing import Handler, Route
from lazyreg.api.schemas import ErrorOut

REF_TEMPLATE = "#/components/schemas/{model}"
PATH_PARAM = re.compile(r"{(\w+)(?::[^}]*)?}")
ERRORS = {
    "400": "Invalid input; `field` names the offending field",
    "401": "No or bad credentials (with --auth on); see WWW-Authenticate",
    "403": "The user's role does not allow it",
    "404": "No such resource",
    "409": "Conflicts with an existing resource",
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _parameters(route: Route) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in PATH_PARAM.findall(route.path)]
    params += [{"name": q.name, "in": "query", "required": False, "description": q.description,
                "schema": {"type": q.type}} for q in route.query]
    return params


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
        op["responses"] = {str(route.status): ok}
        op["responses"].update({code: {"description": text, "content": error}
                                for code, text in ERRORS.items()})
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
