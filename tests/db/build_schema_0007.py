"""Writes tests/db/fixtures/schema-0007.sql: a lazyreg database at schema 0007 (the last
release's) with real data in every table a server fills, for tests/db/test_upgrade.py.

Run once, from a checkout whose migrations end at 0007 (it asserts so):
    LAZYREG_SHARED=../shared .venv/bin/python -m tests.db.build_schema_0007
It starts the upstream rig and a lazyreg server with auth on, and makes remotes (one
with a password, stored encrypted with SECRET_KEY), an on_demand mirror synced and
pulled, a pull-through distribution used once, and users; then dumps the database.
"""

from __future__ import annotations

import sqlite3
import tempfile
import urllib.request
from pathlib import Path

from tests.e2e.expect import layers
from tests.rig import skopeo_copy, start_lazyreg, start_upstream

OUT = Path(__file__).parent / "fixtures" / "schema-0007.sql"
SECRET_KEY = "upgrade-test-secret-key-0007-0123456789abcdef"
ADMIN_PASSWORD = "admin-password-0007"


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="lazyreg-0007-"))
    upstream = start_upstream(work / "upstream", seed=["--big-mib", "0", "--many-tags", "3"])
    server = start_lazyreg(work / "data", env={"LAZYREG_AUTH": "on",
                                               "LAZYREG_SECRET_KEY": SECRET_KEY,
                                               "LAZYREG_ADMIN_PASSWORD": ADMIN_PASSWORD})
    try:
        token = server.headers
        import base64
        basic = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
        token["Authorization"] = f"Basic {basic}"
        server.ok("POST", "users/", {"username": "viewer", "password": "viewer-pw-0007",
                                     "role": "viewer"})
        server.setup_mirror(upstream, "mirror", "fixtures/small", username="u",
                            password="remote-password-0007")
        server.ok("POST", "remotes/", {"name": "hub", "url": upstream.url})
        server.ok("POST", "distributions/", {"name": "hub", "base_path": "hub",
                                             "remote": "hub", "pull_through": True})
        skopeo_copy(f"{server.host}/mirror:v1", work / "v1")
        skopeo_copy(f"{server.host}/hub/fixtures/small:v2", work / "v2")
        digest = next(iter(layers(upstream.tag("fixtures/small", "v1"))))
        with urllib.request.urlopen(f"{server.url}/v2/mirror/blobs/{digest}") as resp:
            resp.read()
    finally:
        server.stop()
        upstream.stop()
    with sqlite3.connect(work / "data" / "lazyreg.db") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "0007"
        OUT.write_text("\n".join(db.iterdump()) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes) from {work}")


if __name__ == "__main__":
    main()
