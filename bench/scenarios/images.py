"""3. Whole images with skopeo: first (lazy) pull and second (cached) pull.

Each repetition gets a fresh lazyreg (on_demand mirrors of the three images)
and a fresh distribution proxy; `direct` pulls from the upstream itself (it
has no cache, so its two pulls are the same reference).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from bench.clients import skopeo_pull
from bench.report import LAZYREG, Row, Section
from bench.scenarios import Context
from bench.servers import blob_gets, log, mirror, requests_since, settle

PROXY, DIRECT = "distribution proxy", "direct"
PULLS = ("first pull", "second pull")


@dataclass(frozen=True)
class Image:
    mirror: str  # lazyreg base path
    repo: str  # upstream repository
    tag: str
    args: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.repo.split('/')[-1]}:{self.tag}" + (" --all" if self.args else "")


IMAGES = (Image("small", "fixtures/small", "v1"),
          Image("multiarch", "fixtures/multiarch", "latest", ("--all",)),
          Image("big", "fixtures/big", "latest"))


def run(ctx: Context) -> Section:
    section = Section("images", "3. Whole image pulls with skopeo", [LAZYREG, PROXY, DIRECT],
                      [(LAZYREG, PROXY), (LAZYREG, DIRECT)])
    up = ctx.servers.upstream()
    seconds = {(i, p): {c: [] for c in section.columns} for i in IMAGES for p in PULLS}
    requests = {i: {c: [] for c in section.columns} for i in IMAGES}

    def pull(host: str, image: Image, name: str, column: str) -> None:
        expect = set(up.tag(image.repo, image.tag)["blobs"])
        for which in PULLS:
            dest = ctx.servers.scratch("skopeo")
            mark = settle(up, quiet=0.1)
            try:
                took = skopeo_pull(f"{host}/{name}:{image.tag}", dest / "out", *image.args,
                                   expect=expect)
            finally:
                shutil.rmtree(dest, ignore_errors=True)
            seconds[image, which][column].append(took)
            if which == "first pull" and column == PROXY:
                # the proxy stores each blob with a second, background GET: let it end
                settle(up, quiet=0.1, until=lambda m=mark: all(
                    blob_gets(up, d, m) >= 2 for d in expect))
            if which == "second pull" and column != DIRECT:
                settle(up, quiet=0.1)
                requests[image][column].append(len(requests_since(up, mark)))

    for rep in range(ctx.reps):
        with ctx.servers.lazyreg() as lz, ctx.servers.proxy(up) as px:
            for image in IMAGES:
                mirror(lz, up, image.mirror, image.repo)
            targets: dict[str, tuple[str, bool]] = {
                LAZYREG: (lz.host, True), PROXY: (px.host, False), DIRECT: (up.host, False)}
            for column in ctx.rotated(list(targets), rep):
                host, is_lazyreg = targets[column]
                for image in IMAGES:
                    pull(host, image, image.mirror if is_lazyreg else image.repo, column)
        log(f"images rep {rep + 1}/{ctx.reps} done")
    for image in IMAGES:
        for which in PULLS:
            section.rows.append(Row(f"{image.label}: {which}", "s", seconds[image, which],
                                    "lower"))
        section.rows.append(Row(f"{image.label}: upstream requests during the second pull",
                                "requests", requests[image], "lower", plot=False))
    section.notes += [
        "`skopeo copy --src-tls-verify=false docker://… dir:…` into a new directory each"
        " time; the time includes starting skopeo (its TLS attempt is refused at once by"
        " all three servers, then it uses HTTP). Every pull is checked to contain the"
        " tag's blobs from the rig's ground truth.",
        "The proxy asks the upstream about the tag on every pull (a /v2/ ping and a HEAD of"
        " the manifest: it cannot know"
        " whether the tag moved); lazyreg serves the tags of its synced repository version"
        " and asks the upstream nothing once the blobs are stored.",
    ]
    return section
