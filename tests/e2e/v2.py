"""Plain HTTP on /v2 for end-to-end tests: requests to lazyreg, and pushes to the upstream rig.

The pushes use the distribution API (blob upload: POST then PUT; manifest PUT),
so a test can put on the upstream exactly the shapes it needs.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import urllib.error
import urllib.request
from contextlib import closing
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from lazyreg.oci import mediatypes as mt

ACCEPT_ALL = ", ".join([mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST,
                        mt.DOCKER_MANIFEST])


@dataclass
class Answer:
    status: int
    headers: Message
    body: bytes

    @property
    def code(self) -> str:
        code: str = json.loads(self.body)["errors"][0]["code"]
        return code

    def json(self) -> Any:
        return json.loads(self.body)


def request(url: str, method: str = "GET", headers: dict[str, str] | None = None,
            body: bytes | None = None) -> Answer:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return Answer(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return Answer(exc.code, exc.headers, exc.read())


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(registry: str, repo: str, data: bytes) -> str:
    digest = sha256(data)
    started = request(f"{registry}/v2/{repo}/blobs/uploads/", "POST", body=b"")
    assert started.status == 202, started.body
    location = urljoin(registry, started.headers["Location"])
    sep = "&" if "?" in location else "?"
    done = request(f"{location}{sep}digest={digest}", "PUT",
                   {"Content-Type": "application/octet-stream"}, data)
    assert done.status == 201, done.body
    return digest


def push_manifest(registry: str, repo: str, reference: str, doc: dict[str, Any]) -> bytes:
    """PUT `doc` as `repo:reference`; its exact bytes."""
    data = json.dumps(doc, indent=2).encode()
    done = request(f"{registry}/v2/{repo}/manifests/{reference}", "PUT",
                   {"Content-Type": doc["mediaType"]}, data)
    assert done.status == 201, done.body
    return data


def push_image(registry: str, repo: str, tag: str, name: str,
               **extra: Any) -> tuple[str, bytes]:
    """A one-layer OCI image distinct by `name` (extra fields go into its manifest)."""
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}, "name": name}).encode()
    layer = f"layer of {name}".encode()
    doc = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                      "digest": push_blob(registry, repo, config), "size": len(config)},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                       "digest": push_blob(registry, repo, layer), "size": len(layer)}],
           **extra}
    data = push_manifest(registry, repo, tag, doc)
    return sha256(data), data


def repository_row(data_dir: Path, name: str) -> tuple[int, str]:
    """(id, uid) of a repository, read from a server's SQLite database."""
    uri = f"file:{data_dir / 'lazyreg.db'}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as conn:
        row = conn.execute("SELECT id, uid FROM repositories WHERE name = ?", (name,)).fetchone()
    assert row is not None, name
    return int(row[0]), str(row[1])
