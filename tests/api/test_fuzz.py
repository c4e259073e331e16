"""schemathesis over /api/v1/openapi.json against a real server: no request gets a 500.

The fuzzer runs every phase (coverage, fuzzing, and stateful sequences that follow
the document's links: create a remote, then show, patch, sync and delete it) for a
fixed time budget, and checks status codes, content types and response bodies
against the document as well. The server and the fuzzer share a network namespace
of their own, holding only loopback: fuzzed remotes name arbitrary hosts, and a
fuzzed sync must reach none of them.

Run as a module (`python -m tests.api.test_fuzz WORKDIR`) it is the part that runs
inside the namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.rig import run, start_lazyreg

# A real server in a network namespace of its own, for about a minute and a half.
pytestmark = pytest.mark.e2e

SECONDS = 60  # the fuzzer's time budget (the suite keeps under 20 minutes)
CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "unsupported_method",
    "use_after_free",
    "ensure_resource_availability",
])
SCHEMATHESIS = Path(sys.executable).parent / "st"
# Operations whose valid requests must have reached the handlers' logic some of the
# time, not only their validation: accepted, or refused as a conflict (a duplicate
# name is found by the handler, once the body validated).
MUST_ACCEPT = ("POST /api/v1/remotes/", "POST /api/v1/repositories/")


def _isolated() -> list[str]:
    """A command prefix: a network namespace of its own, with loopback up."""
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    return ["unshare", *user, "--net", "--", "sh", "-c", 'ip link set lo up && exec "$0" "$@"']


def test_fuzzing_the_api_finds_no_server_error(tmp_path: Path) -> None:
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (util-linux, iproute2)")
    started = time.monotonic()
    proc = run([*_isolated(), sys.executable, "-m", "tests.api.test_fuzz", str(tmp_path)],
               timeout=SECONDS + 180, check=False)
    elapsed = time.monotonic() - started
    (tmp_path / "schemathesis.out").write_text(proc.stdout + proc.stderr)
    output = f"see {tmp_path / 'schemathesis.out'}:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}"
    report = json.loads((tmp_path / "report.json").read_text())
    log = "".join(p.read_text(errors="replace") for p in tmp_path.glob("data-server-*.log"))

    assert proc.returncode == 0, output
    assert report["failures"] == [] and report["errors"] == [], output
    assert report["operations"]["tested"] == report["operations"]["total"], report["operations"]
    assert all(phase["status"] == "success" for name, phase in report["phases"].items()
               if name != "examples"), report["phases"]
    for operation in MUST_ACCEPT:
        rates = report["valid_rates"][operation]
        assert sum(r["accepted"] + r["conflicts"] for r in rates.values()) > 0, (operation, rates)
    assert "Traceback" not in log, log[-8000:]
    cases = report["test_cases"]["generated"]
    assert cases >= 1000, report["test_cases"]
    print(f"schemathesis: {cases} cases in {report['running_time']:.0f}s"
          f" ({elapsed:.0f}s with the server)")


def main(workdir: Path) -> int:
    """Inside the namespace: a real server, the fuzzer against it, its report."""
    # Fuzzed exports and imports name any path: keep them inside the work directory.
    transfer = workdir / "transfer"
    transfer.mkdir()
    server = start_lazyreg(workdir / "data",
                           env={"LAZYREG_TRANSFER_PATHS": json.dumps([str(transfer)])})
    try:
        proc = subprocess.run(
            [str(SCHEMATHESIS), "run", f"{server.url}/api/v1/openapi.json",
             "--checks", CHECKS, "--max-time", str(SECONDS), "--workers", "1",
             "--request-timeout", "30", "--suppress-health-check", "all",
             "--report", "json", "--report-json-path", str(workdir / "report.json"),
             "--output-truncate", "false"],
            cwd=workdir, timeout=SECONDS + 120, check=False)
    finally:
        server.stop()
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
