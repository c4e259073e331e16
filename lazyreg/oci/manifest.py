"""Parse image manifests and manifest lists into the references they make.

Parsing never changes the bytes: the stored manifest is the upstream's exact
bytes, and these dataclasses only describe what it points to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from lazyreg.oci import mediatypes as mt
from lazyreg.oci.digest import InvalidDigest, UnsupportedDigest, parse_digest


class InvalidManifest(ValueError):
    """Bytes that do not form a manifest lazyreg can understand."""


@dataclass(frozen=True)
class Descriptor:
    digest: str
    size: int
    media_type: str
    urls: tuple[str, ...] = ()

    @property
    def foreign(self) -> bool:
        """A non-distributable layer: the upstream registry is not where it lives."""
        return bool(self.urls) or self.media_type in mt.FOREIGN_LAYERS


@dataclass(frozen=True)
class Platform:
    os: str = ""
    architecture: str = ""
    variant: str = ""


@dataclass(frozen=True)
class ChildManifest:
    descriptor: Descriptor
    platform: Platform | None


@dataclass(frozen=True)
class ParsedManifest:
    media_type: str
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    children: tuple[ChildManifest, ...] = field(default=())
    # OCI 1.1: the manifest this one is about (a signature, an SBOM...), and its type
    # (`artifactType`, else the config's media type for an image manifest).
    subject: Descriptor | None = None
    artifact_type: str | None = None

    @property
    def is_list(self) -> bool:
        return mt.is_list(self.media_type)

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        """Every blob the manifest names, foreign layers included."""
        return ((self.config,) if self.config else ()) + self.layers

    @property
    def linked_blobs(self) -> tuple[tuple[int, Descriptor], ...]:
        """(position, descriptor) of the blobs a registry serves: the config at -1,
        layers from 0; foreign layers are left out, positions are kept."""
        config = ((-1, self.config),) if self.config else ()
        return config + tuple((i, d) for i, d in enumerate(self.layers) if not d.foreign)


def _descriptor(obj: object, where: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise InvalidManifest(f"{where}: descriptor is not an object")
    digest, size = obj.get("digest"), obj.get("size")
    if not isinstance(digest, str):
        raise InvalidManifest(f"{where}: invalid digest {digest!r}")
    try:
        parse_digest(digest)
    except UnsupportedDigest as exc:
        raise InvalidManifest(f"{where}: {exc}") from None
    except InvalidDigest:
        raise InvalidManifest(f"{where}: invalid digest {digest[:200]!r}") from None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidManifest(f"{where}: invalid size {size!r}")
    media_type = obj.get("mediaType")
    urls = obj.get("urls")
    if urls is not None and (not isinstance(urls, list)
                             or not all(isinstance(u, str) for u in urls)):
        raise InvalidManifest(f"{where}: 'urls' is not a list of strings")
    return Descriptor(digest, size, media_type if isinstance(media_type, str) else mt.OCTET_STREAM,
                      tuple(urls or ()))


def _subject(doc: dict[str, object]) -> Descriptor | None:
    if doc.get("subject") is None:
        return None
    return _descriptor(doc["subject"], "subject")


def _artifact_type(doc: dict[str, object], config: Descriptor | None) -> str | None:
    declared = doc.get("artifactType")
    if isinstance(declared, str) and declared:
        return declared
    return config.media_type if config else None


def detect_media_type(doc: dict[str, object], content_type: str | None) -> str:
    declared = doc.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    if content_type:
        base = content_type.split(";", 1)[0].strip()
        if base and base not in ("application/json", mt.OCTET_STREAM):
            return base
    # OCI manifests may omit mediaType; their shape tells them apart.
    if "manifests" in doc:
        return mt.OCI_INDEX
    if "config" in doc:
        return mt.OCI_MANIFEST
    return content_type or mt.OCTET_STREAM


def parse_manifest(data: bytes, content_type: str | None = None) -> ParsedManifest:
    """Describe a manifest; unknown media types are opaque (no references), if the
    document says it is a manifest at all (InvalidManifest otherwise)."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidManifest(f"manifest is not valid JSON: {exc}") from exc
    except RecursionError:
        raise InvalidManifest("manifest is not valid JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise InvalidManifest("manifest is not a JSON object")
    media_type = detect_media_type(doc, content_type)

    if media_type in mt.MANIFEST_LISTS:
        entries = doc.get("manifests")
        if not isinstance(entries, list):
            raise InvalidManifest("manifest list has no 'manifests' array")
        children = []
        for i, entry in enumerate(entries):
            desc = _descriptor(entry, f"manifests[{i}]")
            plat = entry.get("platform")
            platform = None
            if isinstance(plat, dict):
                platform = Platform(
                    os=str(plat.get("os", "")),
                    architecture=str(plat.get("architecture", "")),
                    variant=str(plat.get("variant", "")),
                )
            children.append(ChildManifest(desc, platform))
        return ParsedManifest(media_type, children=tuple(children), subject=_subject(doc),
                              artifact_type=_artifact_type(doc, None))

    if media_type in mt.IMAGE_MANIFESTS:
        if "config" not in doc:
            raise InvalidManifest("image manifest has no 'config'")
        config = _descriptor(doc["config"], "config")
        layers_doc = doc.get("layers")
        if not isinstance(layers_doc, list):
            raise InvalidManifest("image manifest has no 'layers' array")
        layers = tuple(_descriptor(layer, f"layers[{i}]") for i, layer in enumerate(layers_doc))
        return ParsedManifest(media_type, config=config, layers=layers, subject=_subject(doc),
                              artifact_type=_artifact_type(doc, config))

    # Anything else is kept opaque, but only if it says it is a manifest: JSON from
    # some other service (reached through a redirect, say) is never stored as one.
    if not (mt.names_a_manifest(doc.get("mediaType")) or mt.names_a_manifest(content_type)
            or (isinstance(doc.get("schemaVersion"), int)
                and not isinstance(doc.get("schemaVersion"), bool))):
        raise InvalidManifest("not a manifest: no manifest, index or artifact media type"
                              f" (Content-Type {str(content_type)[:100]!r}) and no"
                              " schemaVersion")
    return ParsedManifest(media_type)
