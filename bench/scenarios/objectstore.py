"""10. Object storage: lazyreg storing in S3 beside lazyreg on the filesystem, in one run.

The same 64 MiB layer: cached (stored, served to one client: from the local
disk with sendfile, or streamed through from the bucket with one ranged GET),
and lazy (a first pull through a fresh lazyreg, the bytes going to the client
and up to the store at once). `distribution` is the upstream registry serving
the blob from its own storage, the reference for both. The S3 server is the
tests' rig (Swift with its S3 API on loopback), on the same 2 cores.
"""

from __future__ import annotations

import time

from bench.clients import pull_blobs
from bench.report import Row, Section
from bench.scenarios import Context
from bench.servers import big_layer, cpu_seconds, log, mirror, registry_pid, settle

FS, S3, DIST = "lazyreg (filesystem)", "lazyreg (S3)", "distribution"


def _env(ctx: Context, column: str) -> dict[str, str]:
    if column != S3:
        return {}
    s3 = ctx.servers.s3()
    return s3.env(s3.new_bucket())


def _stored(lz: object, digest: str) -> None:
    deadline = time.monotonic() + 30  # the commit follows the last byte
    while digest not in lz.artifact_digests():  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            raise RuntimeError("lazyreg did not store the blob it served")
        time.sleep(0.05)


def run(ctx: Context) -> Section:
    section = Section("objectstore", "10. Object storage: S3 beside the filesystem",
                      [FS, S3, DIST], [(S3, FS), (S3, DIST)])
    up = ctx.servers.upstream(big_mib=64, many_tags=200)
    blob = big_layer(up)
    direct = f"{up.url}/v2/fixtures/big/blobs/{blob.digest}"
    pull_blobs(direct, blob.digest, blob.size)
    gib = blob.size / 2**30
    cached = {c: [] for c in (FS, S3, DIST)}
    cached_cpu = {c: [] for c in (FS, S3, DIST)}
    lazy = {c: [] for c in (FS, S3, DIST)}
    lazy_cpu = {c: [] for c in (FS, S3, DIST)}
    for rep in range(ctx.reps):
        for column in ctx.rotated([FS, S3, DIST], rep):
            if column == DIST:
                pid = registry_pid(up)
                for rates, cpus in ((lazy, lazy_cpu), (cached, cached_cpu)):
                    before = cpu_seconds(pid)
                    batch = pull_blobs(direct, blob.digest, blob.size)
                    rates[DIST].append(batch.mb_per_s)
                    cpus[DIST].append((cpu_seconds(pid) - before) / gib)
                continue
            with ctx.servers.lazyreg(env=_env(ctx, column)) as lz:
                mirror(lz, up, "big", "fixtures/big")
                url = f"{lz.url}/v2/big/blobs/{blob.digest}"
                settle(up)
                before = cpu_seconds(lz.proc.pid)
                batch = pull_blobs(url, blob.digest, blob.size)  # lazy: the first pull
                lazy[column].append(batch.mb_per_s)
                _stored(lz, blob.digest)
                lazy_cpu[column].append((cpu_seconds(lz.proc.pid) - before) / gib)
                pull_blobs(url, blob.digest, blob.size)  # warm
                before = cpu_seconds(lz.proc.pid)
                batch = pull_blobs(url, blob.digest, blob.size)
                cached[column].append(batch.mb_per_s)
                cached_cpu[column].append((cpu_seconds(lz.proc.pid) - before) / gib)
    log("objectstore 64 MiB: " + ", ".join(
        f"{c} cached {max(cached[c]):.0f} MB/s, lazy {max(lazy[c]):.0f} MB/s" for c in cached))
    section.rows += [
        Row("64 MiB cached, 1 client", "MB/s", cached, "higher"),
        Row("64 MiB cached: server CPU per GiB served", "CPU s/GiB", cached_cpu, "lower",
            plot=False),
        Row("64 MiB lazy first pull, 1 client", "MB/s", lazy, "higher"),
        Row("64 MiB lazy first pull: server CPU per GiB (storing included)", "CPU s/GiB",
            lazy_cpu, "lower", plot=False),
    ]
    section.notes += [
        "Client: aiohttp, one connection, size and sha256 verified. For distribution both"
        " rows are the same direct pull of the stored blob (it has no lazy mode here).",
        "lazyreg's CPU is its own process only: the S3 server's (Swift: proxy and object"
        " servers, Python) is not counted, though it shares the 2 cores.",
        "Lazy CPU runs from the GET to the blob's artifact row: on S3 it includes the"
        " multipart upload and its completion; on the filesystem, the staging file.",
    ]
    return section
