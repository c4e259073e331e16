"""The OCI image layout as lazyreg writes and reads it: names, `index.json`, limits.

A layout is `oci-layout` (`{"imageLayoutVersion": "1.0.0"}`), `index.json` (an
OCI image index naming every tag with `org.opencontainers.image.ref.name`,
plus the untagged top-level manifests a version holds, such as referrers) and
`blobs/<algorithm>/<hex>` for every manifest, config and layer. Manifests keep
their exact bytes and media types, Docker ones included: their digests must
not change, so nothing is converted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lazyreg.oci.digest import ALGORITHMS

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
BLOBS_DIR = "blobs"
LAYOUT_VERSION = b'{"imageLayoutVersion": "1.0.0"}'
REF_NAME = "org.opencontainers.image.ref.name"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

# Bounds on what an import reads before anything is stored.
INDEX_LIMIT = 64 * 1024 * 1024  # bytes of index.json (about 300,000 tags)
MAX_MEMBERS = 1_000_000  # entries of an archive or files of a directory
MAX_TAGS = 500_000  # entries of index.json
# Metadata blobs (manifests, configs: JSON up to 4 MiB each) are kept in memory
# while the layout is checked, up to this many bytes in all.
METADATA_LIMIT = 256 * 1024 * 1024
METADATA_BLOB_LIMIT = 4 * 1024 * 1024
# A gzipped archive may unpack to at most this many times its own size (and
# at least GZIP_FLOOR bytes): past that it is a gzip bomb, refused.
GZIP_RATIO = 200
GZIP_FLOOR = 64 * 1024 * 1024


class BadLayout(ValueError):
    """An archive or directory that is not a layout lazyreg may import; the message
    names the entry."""


@dataclass(frozen=True)
class IndexEntry:
    """One manifest of `index.json`: its descriptor, and its tag if it has one."""

    digest: str
    media_type: str
    size: int
    tag: str | None


def blob_path(digest: str) -> str:
    """`blobs/<algorithm>/<hex>` of a digest."""
    algorithm, hexpart = digest.split(":", 1)
    return f"{BLOBS_DIR}/{algorithm}/{hexpart}"


def digest_of_path(name: str) -> str | None:
    """The digest a member named `blobs/<algorithm>/<hex>` holds, None for other names."""
    parts = PurePosixPath(name).parts
    if len(parts) != 3 or parts[0] != BLOBS_DIR:
        return None
    algorithm, hexpart = parts[1], parts[2]
    length = ALGORITHMS.get(algorithm)
    if length is None or len(hexpart) != length or not all(c in "0123456789abcdef"
                                                          for c in hexpart):
        return None
    return f"{algorithm}:{hexpart}"


def clean_name(raw: str) -> str:
    """A member name relative to the layout's root; BadLayout if it would escape it."""
    if raw.startswith("/") or "\\" in raw or "\x00" in raw:
        raise BadLayout(f"{raw!r}: an absolute or malformed path")
    parts = [p for p in PurePosixPath(raw).parts if p != "."]
    if any(p == ".." for p in parts):
        raise BadLayout(f"{raw!r}: a path that escapes the layout")
    return "/".join(parts)


def index_document(entries: Iterable[IndexEntry]) -> bytes:
    manifests = []
    for e in entries:
        descriptor: dict[str, object] = {"mediaType": e.media_type, "digest": e.digest,
                                         "size": e.size}
        if e.tag is not None:
            descriptor["annotations"] = {REF_NAME: e.tag}
        manifests.append(descriptor)
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    return json.dumps(doc, indent=1).encode() + b"\n"


def parse_index(data: bytes) -> list[IndexEntry]:
    """The entries of an `index.json`; BadLayout naming what is wrong."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BadLayout(f"{INDEX_FILE}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("manifests"), list):
        raise BadLayout(f"{INDEX_FILE}: no 'manifests' array")
    raw = doc["manifests"]
    if len(raw) > MAX_TAGS:
        raise BadLayout(f"{INDEX_FILE}: {len(raw)} entries, more than {MAX_TAGS}")
    out = []
    for i, m in enumerate(raw):
        where = f"{INDEX_FILE}: manifests[{i}]"
        if not isinstance(m, dict):
            raise BadLayout(f"{where}: not an object")
        digest, size, media_type = m.get("digest"), m.get("size"), m.get("mediaType")
        if not isinstance(digest, str) or digest_of_path(_path_or_empty(digest)) != digest:
            raise BadLayout(f"{where}: invalid digest {str(digest)[:200]!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadLayout(f"{where}: invalid size {size!r}")
        if not isinstance(media_type, str) or not media_type:
            raise BadLayout(f"{where}: no mediaType")
        annotations = m.get("annotations")
        tag = annotations.get(REF_NAME) if isinstance(annotations, dict) else None
        if tag is not None and not isinstance(tag, str):
            raise BadLayout(f"{where}: {REF_NAME} is not a string")
        out.append(IndexEntry(digest, media_type, size, tag))
    return out


def _path_or_empty(digest: str) -> str:
    return blob_path(digest) if ":" in digest else ""


def kind_of(target: Path) -> str:
    """`tar`, `tar.gz` or `dir`, from the target's name."""
    name = target.name
    if name.endswith((".tar.gz", ".tgz")):
        return "tar.gz"
    if name.endswith(".tar"):
        return "tar"
    return "dir"
