"""8. Pull-through: lazyreg as a registry mirror against distribution's proxy, with skopeo.

Each repetition gets a fresh lazyreg with a pull-through distribution of the
whole upstream (a remote with only a url; no sync, no repository beforehand)
and a fresh distribution proxy (empty storage). Each pulls `small:v1` and
`big:latest` twice with skopeo; the upstream's access log counts the requests
that reach it during each pull.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from bench.clients import skopeo_pull
from bench.report import LAZYREG, Goal, Row, Section
from bench.scenarios import Context
from bench.servers import blob_gets, log, requests_since, settle
from tests.rig import Lazyreg, Upstream

PROXY = "distribution proxy"
PULLS = ("first pull", "second pull")


@dataclass(frozen=True)
class Image:
    repo: str
    tag: str

    @property
    def label(self) -> str:
        return f"{self.repo.split('/')[-1]}:{self.tag}"


IMAGES = (Image("fixtures/small", "v1"), Image("fixtures/big", "latest"))


def _pull_through(server: Lazyreg, upstream: Upstream) -> None:
    server.ok("POST", "remotes/", {"name": "upstream", "url": upstream.url})
    server.ok("POST", "distributions/", {"name": "hub", "base_path": "hub",
                                         "remote": "upstream", "pull_through": True})


def run(ctx: Context) -> Section:
    section = Section("pullthrough", "8. Pull-through (registry mirror) with skopeo",
                      [LAZYREG, PROXY], [(LAZYREG, PROXY)])
    up = ctx.servers.upstream()
    columns = section.columns
    seconds = {(i, p): {c: [] for c in columns} for i in IMAGES for p in PULLS}
    requests = {(i, p): {c: [] for c in columns} for i in IMAGES for p in PULLS}

    def pull(host: str, prefix: str, image: Image, column: str) -> None:
        expect = set(up.tag(image.repo, image.tag)["blobs"])
        for which in PULLS:
            dest = ctx.servers.scratch("skopeo")
            mark = settle(up, quiet=0.1)
            try:
                took = skopeo_pull(f"{host}/{prefix}{image.repo}:{image.tag}", dest / "out",
                                   expect=expect)
            finally:
                shutil.rmtree(dest, ignore_errors=True)
            seconds[image, which][column].append(took)
            if which == "first pull" and column == PROXY:
                # the proxy stores each blob with a second, background GET: let it end
                settle(up, quiet=0.1, until=lambda m=mark: all(
                    blob_gets(up, d, m) >= 2 for d in expect))
            else:
                settle(up, quiet=0.1)
            requests[image, which][column].append(len(requests_since(up, mark)))

    for rep in range(ctx.reps):
        with ctx.servers.lazyreg() as lz, ctx.servers.proxy(up) as px:
            _pull_through(lz, up)
            targets = {LAZYREG: (lz.host, "hub/"), PROXY: (px.host, "")}
            for column in ctx.rotated(list(targets), rep):
                host, prefix = targets[column]
                for image in IMAGES:
                    pull(host, prefix, image, column)
        log(f"pullthrough rep {rep + 1}/{ctx.reps} done")
    for image in IMAGES:
        for which in PULLS:
            second = which == "second pull"
            section.rows.append(Row(f"{image.label}: {which}", "s", seconds[image, which],
                                    "lower", Goal("ratio", "<=", 1.0) if second else None))
            section.rows.append(Row(f"{image.label}: upstream requests during the {which}",
                                    "requests", requests[image, which], "lower",
                                    Goal("value", "<=", 0) if second else None, plot=False))
    section.notes += [
        "lazyreg: a remote with only the upstream's url and one pull-through distribution"
        " (base path `hub`), created before the first pull; no repository, no sync. The"
        " first pull creates the repository `hub/fixtures/…`, fetches the manifest and config"
        " and streams each layer while storing it; the second pull falls within the remote's"
        " tag_ttl (300 s), so lazyreg serves the tag, manifest and layers from its own"
        " storage without asking the upstream anything.",
        "The distribution proxy asks the upstream about the tag on every pull (a /v2/ ping and"
        " a HEAD of the manifest), so its second pull makes 2 upstream requests; on a first"
        " pull it downloads each blob twice (for the client, and for its storage).",
        "`skopeo copy --src-tls-verify=false docker://… dir:…` into a new directory each"
        " time, the time including skopeo's start; every pull is checked to hold the tag's"
        " blobs from the rig's ground truth. Upstream requests are counted in the upstream's"
        " access log from before a pull until it is quiet after it.",
    ]
    return section
