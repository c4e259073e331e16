"""What the ground truth (`manifest-index.json`) says a sync or a pull must produce."""

from __future__ import annotations

from typing import Any


def images(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The image entries of a tag: itself, or the children of a list."""
    return entry.get("children") or [entry]


def configs(entry: dict[str, Any]) -> set[str]:
    return {img["config"]["digest"] for img in images(entry)}


def layers(entry: dict[str, Any]) -> set[str]:
    return {layer["digest"] for img in images(entry) for layer in img["layers"]}


def repo_truth(index: dict[str, Any], repo: str) -> dict[str, set[str]]:
    tags = index["repos"][repo]
    out: dict[str, set[str]] = {"tags": set(tags), "manifests": set(), "blobs": set(),
                                "configs": set(), "layers": set()}
    for entry in tags.values():
        out["manifests"] |= set(entry["manifests"])
        out["blobs"] |= set(entry["blobs"])
        out["configs"] |= configs(entry)
        out["layers"] |= layers(entry)
    return out


def child(entry: dict[str, Any], architecture: str) -> dict[str, Any]:
    return next(c for c in entry["children"] if c["platform"]["architecture"] == architecture)
