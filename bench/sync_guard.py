"""The sync regression guard: the 200-tag sync timed against a reference from the same run.

The reference is the upstream's own floor for the requests a first sync of
200 tags needs: 401 plain sequential requests (the tag list, 200 manifest
GETs, 200 config GETs) from one keep-alive aiohttp client to the same
upstream, bodies read. `ratio = sync seconds / reference seconds` cancels most
of what a noisy machine does to both; the guard fails when the ratio grows
more than TOLERANCE over the ratio committed in `bench/sync_guard.json`
(written by `python -m bench.sync_guard --update RATIO`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import aiohttp

from bench.clients import MANIFEST_ACCEPT
from tests.rig import Upstream

COMMITTED = Path(__file__).resolve().parent / "sync_guard.json"
TOLERANCE = 0.5  # fail when the ratio is more than 50% over the committed one
REPO = "fixtures/many"


class GuardFailed(Exception):
    """The sync got slower against the reference than the committed ratio allows."""


def reference_paths(up: Upstream, repo: str = REPO) -> list[tuple[str, dict[str, str]]]:
    """What a first on_demand sync asks: tags/list, then each tag's manifest and config."""
    paths = [(f"/v2/{repo}/tags/list", {})]
    tags = up.index["repos"][repo]
    for tag in sorted(tags):
        paths.append((f"/v2/{repo}/manifests/{tag}", {"Accept": MANIFEST_ACCEPT}))
    for tag in sorted(tags):
        paths.append((f"/v2/{repo}/blobs/{tags[tag]['config']['digest']}", {}))
    return paths


async def _reference(url: str, paths: list[tuple[str, dict[str, str]]]) -> float:
    connector = aiohttp.TCPConnector(limit=1)  # one keep-alive connection
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(url + "/v2/") as resp:  # connected before the clock starts
            await resp.read()
        started = time.perf_counter()
        for path, headers in paths:
            async with session.get(url + path, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"reference request {path}: HTTP {resp.status}")
        return time.perf_counter() - started


def reference_seconds(up: Upstream) -> float:
    return asyncio.run(_reference(up.url, reference_paths(up)))


def committed_ratio() -> float:
    return float(json.loads(COMMITTED.read_text())["ratio"])


def check(sync_seconds: list[float], reference: list[float]) -> tuple[float, float]:
    """The median ratio of this run and the limit; GuardFailed when over it."""
    ratio = statistics.median(s / r for s, r in zip(sync_seconds, reference, strict=True))
    limit = committed_ratio() * (1 + TOLERANCE)
    if ratio > limit:
        raise GuardFailed(f"the 200-tag sync took {ratio:.2f}x the reference (401 sequential"
                          f" requests to the same upstream); the committed ratio is"
                          f" {committed_ratio():.2f}, the limit {limit:.2f}"
                          f" (bench/sync_guard.json)")
    return ratio, limit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sync_guard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update", type=float, metavar="RATIO", required=True,
                        help="commit this ratio (the median a bench run printed)")
    args = parser.parse_args(argv)
    COMMITTED.write_text(json.dumps({
        "ratio": round(args.update, 3),
        "what": "median of (200-tag on_demand sync seconds) / (401 sequential keep-alive"
                " requests to the same upstream, seconds); bench/sync_guard.py"}, indent=2)
        + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
