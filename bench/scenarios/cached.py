"""1. Cached blob throughput: a blob already stored, served to 1 and 8 concurrent clients.

lazyreg serves it from its storage (after one lazy pull stored it); the
`distribution` column is the upstream registry serving the same blob from its
own storage. The cached distribution proxy is shown for reference.
"""

from __future__ import annotations

from bench.clients import curl_blobs, pull_blobs
from bench.report import LAZYREG, Goal, Row, Section
from bench.scenarios import Context
from bench.servers import big_layer, blob_gets, cpu_seconds, log, mirror, registry_pid, settle

DIST, PROXY = "distribution", "distribution proxy (cached)"
CONCURRENCY = (1, 8)


def run(ctx: Context) -> Section:
    section = Section("cached", "1. Cached blob throughput", [LAZYREG, DIST, PROXY],
                      [(LAZYREG, DIST)])
    sizes = (64,) if ctx.quick else (64, 512)
    for mib in sizes:
        up = ctx.servers.upstream(big_mib=mib, many_tags=200 if mib == 64 else 0)
        blob = big_layer(up)
        with ctx.servers.lazyreg() as lz, ctx.servers.proxy(up) as px:
            mirror(lz, up, "big", "fixtures/big")
            urls = {LAZYREG: f"{lz.url}/v2/big/blobs/{blob.digest}",
                    DIST: f"{up.url}/v2/fixtures/big/blobs/{blob.digest}",
                    PROXY: f"{px.url}/v2/fixtures/big/blobs/{blob.digest}"}
            warm = settle(up)
            for url in urls.values():  # stores it in lazyreg and in the proxy; warms caches
                pull_blobs(url, blob.digest, blob.size)
            if blob.digest not in lz.artifact_digests():
                raise RuntimeError("lazyreg did not store the blob after a first pull")
            # lazyreg 1, direct 1, the proxy 2 (for the client, and for its storage)
            mark = settle(up, until=lambda u=up, d=blob.digest, w=warm: blob_gets(u, d, w) >= 4)
            pids = {LAZYREG: lz.proc.pid, DIST: registry_pid(up), PROXY: registry_pid(px)}
            for conc in CONCURRENCY:
                verified: dict[str, list[float]] = {c: [] for c in urls}
                raw: dict[str, list[float]] = {c: [] for c in urls}
                cpu: dict[str, list[float]] = {c: [] for c in urls}
                client: dict[str, list[float]] = {c: [] for c in urls}
                for rep in range(ctx.reps):
                    for column in ctx.rotated(list(urls), rep):
                        before = cpu_seconds(pids[column])
                        batch = pull_blobs(urls[column], blob.digest, blob.size, conc)
                        gib = batch.nbytes / 2**30
                        cpu[column].append((cpu_seconds(pids[column]) - before) / gib)
                        client[column].append(batch.client_cpu / gib)
                        verified[column].append(batch.mb_per_s)
                        raw[column].append(curl_blobs(urls[column], blob.size, conc))
                log(f"cached {mib} MiB x{conc}: " + ", ".join(
                    f"{c} {max(v):.0f} MB/s" for c, v in verified.items()))
                clients = "1 client" if conc == 1 else f"{conc} clients"
                section.rows.append(Row(f"{mib} MiB, {clients}, aiohttp + sha256", "MB/s",
                                        verified, "higher", Goal("ratio", ">=", 1.0)))
                section.rows.append(Row(f"{mib} MiB, {clients}, curl (no digest check)",
                                        "MB/s", raw, "higher"))
                section.rows.append(Row(f"{mib} MiB, {clients}: server CPU per GiB served",
                                        "CPU s/GiB", cpu, "lower", plot=False))
                section.rows.append(Row(f"{mib} MiB, {clients}: aiohttp client CPU per GiB",
                                        "CPU s/GiB", client, "lower", plot=False))
            own = ctx.reps * 2 * sum(CONCURRENCY)  # the distribution column's GETs
            settle(up)
            extra = blob_gets(up, blob.digest, mark) - own
            section.notes.append(
                f"{mib} MiB: {extra} GET(s) of the blob reached the upstream from lazyreg or the"
                " proxy while they were measured (0 = both served from their storage).")
    section.notes += [
        "aiohttp + sha256: the Python client verifies every body's size and digest (one"
        " process, inline hashing); on 2 cores it is the bottleneck, which is why the"
        " curl rows (N parallel `curl -o /dev/null`, size checked) are shown too.",
        "MB/s is aggregate: N x blob size ÷ wall time of the batch.",
        "Server CPU: user + system time of the server process (/proc/PID/stat, 10 ms"
        " ticks) over the aiohttp batches, per GiB sent; client CPU: the same for the"
        " benchmark's own process (the aiohttp client). lazyreg sends a stored blob with"
        " sendfile; distribution 2.8 reads and write()s it in 32 KiB pieces (seen with"
        " strace), hence its CPU.",
        "Both servers' bytes reach the client in the same 256 KiB reads (strace of the"
        " client). What cost the client more with lazyreg was where the kernel did the"
        " sending: with megabytes unsent in lazyreg's socket, every acknowledgement the"
        " client sent made the kernel transmit more of them in the client's own time (its"
        " softirq and system time: perf). lazyreg keeps its unsent bytes under 64 KiB"
        " (TCP_NOTSENT_LOWAT) while it sendfile()s, topping them up as the client reads:"
        " that costs lazyreg's event loop more wake-ups, and the client less.",
        "A client CPU per GiB close to the wall time per GiB (1074 ÷ MB/s seconds) means"
        " the client was busy all the time, i.e. it was the bottleneck: a server whose bytes"
        " cost the client more CPU then looks slower although it spends less itself. The"
        " curl rows show the servers with a cheap client.",
    ]
    return section
