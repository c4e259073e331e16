"""The manifest and blob media types lazyreg knows about."""

from __future__ import annotations

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

IMAGE_MANIFESTS = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
MANIFEST_LISTS = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
KNOWN_MANIFESTS = IMAGE_MANIFESTS | MANIFEST_LISTS

# Sent on every upstream manifest request: without the schema2 types distribution
# converts to schema1 (another digest), without the OCI types it answers 404.
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST])

OCTET_STREAM = "application/octet-stream"

# Non-distributable ("foreign") layers: the registry does not serve them; their
# descriptors usually carry `urls` saying where they live instead.
FOREIGN_LAYERS = frozenset({
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
})


# A vendor type naming a manifest or an index: schema1, the OCI artifact manifest,
# and the types registries will invent next.
_MANIFEST_WORDS = (".manifest.", ".index.", "+prettyjws")


def names_a_manifest(media_type: object) -> bool:
    """Whether a Content-Type or `mediaType` says "manifest" (or index, or artifact)."""
    if not isinstance(media_type, str):
        return False
    base = media_type.split(";", 1)[0].strip().lower()
    return base in KNOWN_MANIFESTS or (base.startswith("application/vnd.")
                                       and any(w in base for w in _MANIFEST_WORDS))


def is_list(media_type: str) -> bool:
    return media_type in MANIFEST_LISTS
