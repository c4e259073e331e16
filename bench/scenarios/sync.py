"""5. Sync: an on_demand sync of `fixtures/many` (200 and 1,000 tags), then the same again.

Each repetition gets a fresh lazyreg. Upstream requests are counted from the
upstream registry's access log. distribution has no sync to compare with.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench import sync_guard
from bench.report import LAZYREG, Goal, Row, Section
from bench.scenarios import Context
from bench.servers import log, requests_since, settle
from tests.rig import Lazyreg, Upstream

PEER = "distribution"


# Issue 14's goals: (tags, first sync or again) -> (seconds, upstream requests).
GOALS: dict[tuple[int, str], tuple[Goal | None, Goal | None]] = {
    (200, "first"): (Goal("value", "<=", 0.5), Goal("value", "<=", 401)),
    (1000, "first"): (Goal("value", "<=", 2.5), None),
    (200, "again"): (Goal("value", "<=", 0.15), None),
}


def timed_sync(server: Lazyreg, name: str) -> tuple[float, dict[str, Any]]:
    """Seconds from POSTing the sync to seeing its task finished (polled every 20 ms)."""
    started = time.perf_counter()
    task = server.ok("POST", f"repositories/{name}/sync/", {"remote": name, "mirror": False})
    while task["state"] not in ("completed", "failed", "canceled"):
        time.sleep(0.02)
        task = server.ok("GET", f"tasks/{task['id']}/")
    seconds = time.perf_counter() - started
    if task["state"] != "completed":
        raise RuntimeError(f"sync failed: {task}")
    return seconds, task


def create_mirror(server: Lazyreg, up: Upstream, name: str, upstream_name: str) -> None:
    server.ok("POST", "remotes/", {"name": name, "url": up.url, "upstream_name": upstream_name,
                                   "policy": "on_demand"})
    server.ok("POST", "repositories/", {"name": name})
    server.ok("POST", "distributions/", {"name": name, "base_path": name, "repository": name})


def many_upstream(ctx: Context, tags: int) -> Upstream:
    return ctx.servers.upstream() if tags == 200 else ctx.servers.upstream(0, tags)


def _requests(up: Upstream, mark: int) -> int:
    settle(up, quiet=0.1)
    return len(requests_since(up, mark))


def guard_row(section: Section, first: list[float], reference: list[float]) -> str | None:
    """The regression guard's ratio (`bench/sync_guard.py`); why it failed, or None."""
    ratios = [s / r for s, r in zip(first, reference, strict=True)]
    limit = sync_guard.committed_ratio() * (1 + sync_guard.TOLERANCE)
    section.rows.append(Row("200 tags: first sync / reference", "x reference",
                            {LAZYREG: ratios}, "lower", Goal("value", "<=", round(limit, 2)),
                            plot=False))
    log(f"sync guard: {statistics.median(ratios):.2f}x the reference"
        f" ({statistics.median(reference):.3f} s), limit {limit:.2f}")
    failure = None
    try:
        sync_guard.check(first, reference)
    except sync_guard.GuardFailed as exc:
        failure = str(exc)
    section.notes.append(
        "Guard (CI): the 200-tag first sync over a reference measured in the same run, 401"
        " plain sequential requests (tag list, manifests, configs) from one keep-alive"
        f" client to the same upstream; it fails above {limit:.2f}, 50% over the ratio"
        " committed in bench/sync_guard.json.")
    return failure


def run(ctx: Context) -> Section:
    section = Section("sync", "5. Sync (on_demand)", [LAZYREG, PEER], [],
                      missing="n/a (no sync)")
    counts = (200,) if ctx.quick else (200, 1000)
    failure: str | None = None
    for tags in counts:
        up = many_upstream(ctx, tags)
        if len(up.index["repos"]["fixtures/many"]) != tags:
            raise RuntimeError(f"upstream has not {tags} tags of fixtures/many")
        rate: dict[str, list[float]] = {"first": [], "again": []}
        took: dict[str, list[float]] = {"first": [], "again": []}
        requests: dict[str, list[float]] = {"first": [], "again": []}
        reference: list[float] = []
        for _ in range(ctx.reps):
            with ctx.servers.lazyreg() as lz:
                create_mirror(lz, up, "many", "fixtures/many")
                if tags == 200:  # the guard's reference, right before the sync it times
                    settle(up, quiet=0.1)
                    reference.append(sync_guard.reference_seconds(up))
                for which in ("first", "again"):
                    mark = settle(up, quiet=0.1)
                    seconds, task = timed_sync(lz, "many")
                    made = bool(task["created_resources"])
                    if made != (which == "first"):
                        raise RuntimeError(f"sync ({which}) created {task['created_resources']}")
                    took[which].append(seconds)
                    rate[which].append(tags / seconds)
                    requests[which].append(_requests(up, mark))
                if lz.ok("GET", "content/tags/?repository=many&limit=1")["count"] != tags:
                    raise RuntimeError("the synced version does not hold every tag")
        log(f"sync {tags} tags: first {min(took['first']):.2f} s,"
            f" again {min(took['again']):.2f} s")
        for which, label in (("first", "first sync"), ("again", "re-sync, nothing changed")):
            seconds_goal, requests_goal = GOALS.get((tags, which), (None, None))
            section.rows += [
                Row(f"{tags} tags: {label}", "tags/s", {LAZYREG: rate[which]},
                    "higher"),
                Row(f"{tags} tags: {label}", "s", {LAZYREG: took[which]}, "lower",
                    seconds_goal, plot=False),
                Row(f"{tags} tags: {label}", "upstream requests", {LAZYREG: requests[which]},
                    "lower", requests_goal, plot=False),
            ]
        if reference:
            failure = guard_row(section, took["first"], reference)
    if failure:
        raise sync_guard.GuardFailed(failure)
    section.notes += [
        "distribution has no sync: a pull-through cache learns a repository only as clients"
        " pull it, so this scenario has no peer.",
        "Time: from POST /api/v1/repositories/many/sync/ to the task seen completed (polled"
        " every 20 ms), on a fresh lazyreg each repetition; the re-sync runs right after on"
        " the same server and must create no version.",
        "An on_demand first sync of N tags of distinct images needs 1 tags/list"
        " + N manifest GET + N config GET (+ the /v2/ ping): no HEAD of a tag it has never"
        " seen; a re-sync needs the tags/list and N HEADs.",
    ]
    return section
