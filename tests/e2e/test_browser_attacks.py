"""Issue 20, finding 1, with a real browser: headless Chromium on another origin cannot
make lazyreg (auth off, its default) write, directly or by DNS rebinding.

The attacker's page is served from 127.0.0.2, another origin than lazyreg's
127.0.0.1, and sends the classic `text/plain` form whose body reads as JSON
(`{"name": "evil", "description": "="}`): no CORS preflight, and before the fix a 201.
"""

from __future__ import annotations

import http.server
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.e2e.test_observe import chromium
from tests.rig import Lazyreg

pytestmark = pytest.mark.e2e

ATTACK = """<!doctype html><html><body onload="document.forms[0].submit()">
<form method="post" enctype="text/plain" action="{target}/api/v1/repositories/">
<input name='{{"name": "evil", "description": "' value='"}}'></form></body></html>
"""


@contextmanager
def attacker_site(page: str) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.2:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_page_elsewhere_and_a_rebound_name_cannot_write_through_chromium(
        lazyreg: Lazyreg, tmp_path: Path) -> None:
    if shutil.which("chromium") is None:
        pytest.fail("chromium is not installed: run `make test`, which installs it")
    with attacker_site(ATTACK.format(target=lazyreg.url)) as url:
        for _ in range(3):
            dom = chromium(url, tmp_path, "--dump-dom", "--virtual-time-budget=10000")
            if dom.strip():  # headless Chromium now and then dumps nothing after a navigation
                break
    assert "Content-Type: application/json" in dom or "another origin" in dom, dom[:2000]
    names = [r["name"] for r in lazyreg.ok("GET", "repositories/")["results"]]
    assert "evil" not in names

    # DNS rebinding: the attacker's name now resolves to 127.0.0.1; to the browser the
    # page and lazyreg are one origin, but lazyreg does not answer that name.
    port = lazyreg.url.rsplit(":", 1)[1]
    lazyreg.ok("POST", "remotes/", {"name": "secret", "url": "https://registry.example.test",
                                    "upstream_name": "team/secret"})
    dom = chromium(f"http://rebind.example:{port}/api/v1/remotes/", tmp_path, "--dump-dom",
                   "--host-resolver-rules=MAP rebind.example 127.0.0.1")
    assert "not this server's" in dom and "team/secret" not in dom, dom[:2000]
    dom = chromium(f"http://localhost:{port}/api/v1/remotes/", tmp_path, "--dump-dom")
    assert "team/secret" in dom  # a loopback name is answered
