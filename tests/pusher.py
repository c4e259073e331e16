"""Push blobs and manifests of any shape into a registry (anonymous, plain HTTP).

The registry upload protocol, as the rig's seeder speaks it: `HEAD` the blob,
else `POST /blobs/uploads/` and a monolithic `PUT <Location>&digest=`; then
`PUT /manifests/<ref>`. Keep-alive connections, one per thread: an image's
layers go up JOBS at a time.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any

JOBS = 4

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


class Pusher:
    def __init__(self, url: str) -> None:
        self.host = urllib.parse.urlsplit(url).netloc
        self._local = threading.local()
        self._conns: list[http.client.HTTPConnection] = []
        self.blobs: dict[str, bytes] = {}  # every blob pushed, by digest
        self.manifests: dict[str, bytes] = {}  # every manifest pushed, by digest

    def _request(self, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(self.host, timeout=60)
            self._conns.append(conn)
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        return resp

    def blob(self, repo: str, data: bytes) -> str:
        digest = sha256(data)
        self.blobs[digest] = data
        if self._request("HEAD", f"/v2/{repo}/blobs/{digest}").status == 200:
            return digest
        resp = self._request("POST", f"/v2/{repo}/blobs/uploads/")
        if resp.status != 202:
            raise AssertionError(f"upload of {digest} refused: HTTP {resp.status}")
        location = urllib.parse.urlsplit(resp.getheader("Location", ""))
        query = [*urllib.parse.parse_qsl(location.query), ("digest", digest)]
        resp = self._request("PUT", location.path + "?" + urllib.parse.urlencode(query), data,
                             {"Content-Type": "application/octet-stream"})
        if resp.status != 201:
            raise AssertionError(f"PUT of blob {digest}: HTTP {resp.status}")
        return digest

    def manifest(self, repo: str, ref: str | None, doc: dict[str, Any]) -> str:
        data = json.dumps(doc, separators=(",", ":")).encode()
        digest = sha256(data)
        resp = self._request("PUT", f"/v2/{repo}/manifests/{ref or digest}", data,
                             {"Content-Type": doc["mediaType"]})
        if resp.status != 201:
            raise AssertionError(f"PUT of manifest {ref or digest}: HTTP {resp.status}")
        self.manifests[digest] = data
        return digest

    def image(self, repo: str, ref: str | None, config: bytes, layers: list[bytes],
              **fields: Any) -> str:
        """An OCI image manifest with its blobs pushed; `fields` are added as they are."""
        doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
               "config": descriptor(OCI_CONFIG, config),
               "layers": [descriptor(OCI_LAYER, layer) for layer in layers], **fields}
        self.blob(repo, config)
        with ThreadPoolExecutor(JOBS) as pool:
            list(pool.map(lambda layer: self.blob(repo, layer), layers))
        return self.manifest(repo, ref, doc)

    def index(self, repo: str, ref: str | None, children: list[str]) -> str:
        entries = []
        for child in children:
            data = self.manifests[child]
            entries.append({"mediaType": json.loads(data)["mediaType"], "digest": child,
                            "size": len(data),
                            "platform": {"os": "linux", "architecture": "amd64"}})
        return self.manifest(repo, ref, {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                         "manifests": entries})

    def close(self) -> None:
        for conn in self._conns:
            conn.close()
