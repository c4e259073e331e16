"""The OCI distribution API, read side, and the lazy blob path."""

from __future__ import annotations

from aiohttp import web

from lazyreg.registry import blobs, listing, manifests, token


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/token", token.issue)
    app.router.add_get("/v2/", listing.v2_root)
    app.router.add_get("/v2", listing.v2_root)
    app.router.add_get("/v2/_catalog", listing.catalog)
    app.router.add_get(r"/v2/{name:.+}/tags/list", listing.tags_list)
    app.router.add_get(r"/v2/{name:.+}/manifests/{reference}", manifests.get_manifest)
    app.router.add_get(r"/v2/{name:.+}/blobs/{digest}", blobs.get_blob)
