"""11. Prefetch: time from a client's manifest GET to the last layer's first byte.

An image of `fixtures/small` (3 layers), synced on_demand through a fault
proxy that delays each upstream blob GET by DELAY_MS (the latency of a distant
registry), pulled as a client does: the manifest, then the config, then every
layer at once. With the remote's `prefetch: platform`, the manifest GET
starts the layers' downloads, so their first bytes come one upstream delay
earlier than with `prefetch: none`. Each repetition gets a fresh lazyreg for
each setting (interleaved); the upstream must still see one GET per layer.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import aiohttp

from bench.clients import MANIFEST_ACCEPT
from bench.report import LAZYREG, Goal, Row, Section
from bench.scenarios import Context
from bench.servers import log, mirror, requests_since, settle
from tests.rig import FaultProxy, Upstream

REPO, TAG = "fixtures/small", "v1"
DELAY_MS = 150
# What a client at a distance, and its own work, put between its requests: a
# real client GETs the index, its platform's manifest and the config before any layer.
CLIENT_GAP = 0.05
MODES = ("none", "platform")


async def _pull(url: str, name: str, config: str, layers: list[str]) -> float:
    """Seconds from sending the manifest GET to the first byte of the last layer."""
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        async with session.get(f"{url}/v2/{name}/manifests/{TAG}",
                               headers={"Accept": MANIFEST_ACCEPT}) as resp:
            await resp.read()
        await asyncio.sleep(CLIENT_GAP)
        async with session.get(f"{url}/v2/{name}/blobs/{config}") as resp:
            await resp.read()
        await asyncio.sleep(CLIENT_GAP)

        async def layer(digest: str) -> float:
            async with session.get(f"{url}/v2/{name}/blobs/{digest}") as resp:
                await resp.content.readany()
                first = time.perf_counter() - started
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"layer {digest}: HTTP {resp.status}")
                return first
        return max(await asyncio.gather(*(layer(d) for d in layers)))


def _one(ctx: Context, up: Upstream, proxy: FaultProxy, mode: str) -> float:
    entry = up.tag(REPO, TAG)
    layers = [layer["digest"] for layer in entry["layers"]]
    with ctx.servers.lazyreg() as lz:
        mirror(lz, proxy, "small", REPO, prefetch=mode)
        mark = settle(up, quiet=0.1)
        seconds = asyncio.run(_pull(lz.url, "small", entry["config"]["digest"], layers))
        settle(up, quiet=0.2)
        gets = [r for r in requests_since(up, mark) if r[0] == "GET" and "/blobs/" in r[1]]
        for digest in layers:
            n = sum(1 for r in gets if r[1].endswith(digest))
            if n != 1:
                raise RuntimeError(f"prefetch {mode}: {n} upstream GETs of layer {digest}")
    return seconds


def run(ctx: Context) -> Section:
    section = Section("prefetch", "11. Prefetch: manifest GET to the last layer's first byte",
                      [LAZYREG], [])
    up = ctx.servers.upstream()
    proxy = FaultProxy(up.url, ctx.servers.scratch("prefetch-proxy") / "faults.log")
    try:
        proxy.configure(delay_ms=DELAY_MS, reset=True)
        took: dict[str, list[float]] = {mode: [] for mode in MODES}
        for rep in range(ctx.reps):
            for mode in ctx.rotated(MODES, rep):
                took[mode].append(_one(ctx, up, proxy, mode))
    finally:
        proxy.stop()
    log("prefetch: last layer's first byte after " + ", ".join(
        f"{min(v) * 1000:.0f} ms ({k})" for k, v in took.items()))
    for mode in MODES:
        # The goal: prefetch's median below the median without it, in the same run.
        goal = (Goal("value", "<", round(statistics.median(took["none"]), 3))
                if mode == "platform" else None)
        section.rows.append(Row(f"prefetch: {mode}", "s", {LAZYREG: took[mode]}, "lower",
                                goal))
    section.notes += [
        f"Every upstream blob GET is delayed {DELAY_MS} ms by the fault proxy (a distant"
        " registry). The client GETs the manifest, then the config, then all 3 layers at"
        f" once, {CLIENT_GAP * 1000:.0f} ms apart (a client at a distance, doing its own"
        " work between requests); the time is to the first byte of the last layer.",
        "The upstream saw exactly one GET per layer in every repetition (checked).",
    ]
    return section
