"""The OCI distribution API, read side (with OCI 1.1 referrers), and the lazy blob path."""

from __future__ import annotations

from aiohttp import web

from lazyreg.registry import blobs, listing, manifests, referrers, token


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/token", token.issue)
    app.router.add_post("/token", token.issue_form)
    # Names match any characters ("." would stop at a newline), so that a malformed
    # one reaches the handler and gets NAME_INVALID rather than a bare 404.
    app.router.add_get("/v2/", listing.v2_root)
    app.router.add_get("/v2", listing.v2_root)
    app.router.add_get("/v2/_catalog", listing.catalog)
    app.router.add_get(r"/v2/{name:[\s\S]+}/tags/list", listing.tags_list)
    app.router.add_get(r"/v2/{name:[\s\S]+}/manifests/{reference}", manifests.get_manifest)
    app.router.add_get(r"/v2/{name:[\s\S]+}/blobs/{digest}", blobs.get_blob)
    app.router.add_get(r"/v2/{name:[\s\S]+}/referrers/{digest}", referrers.get_referrers)
