"""The clients every server is measured with, the same for lazyreg and its peer.

- `pull_blobs`: an aiohttp client that GETs one blob with N concurrent
  connections and verifies each body's size and sha256;
- `curl_blobs`: N parallel `curl -o /dev/null` (size checked, no digest): what
  the server gives a client that costs almost nothing;
- `request_rate`: requests per second of a small request at C connections,
  with ApacheBench (`ab`, from apache2-utils, which the rig installs) when it is
  installed, else an aiohttp loop;
- `skopeo_pull`: a whole image with skopeo, timed.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tests.rig import skopeo_copy

MANIFEST_ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
READ_BUFSIZE = 4 * 1024 * 1024
TIMEOUT = aiohttp.ClientTimeout(total=900, sock_connect=30, sock_read=120)


class BenchError(RuntimeError):
    """A server answered wrongly: the measurement is void."""


@dataclass(frozen=True)
class Pull:
    seconds: float  # from the start of the batch to this body's last byte
    ttfb: float  # from the start of the batch to this body's first byte
    nbytes: int


@dataclass(frozen=True)
class Batch:
    wall: float  # first request sent -> last body verified
    pulls: list[Pull]
    client_cpu: float  # CPU seconds this client process spent on the batch

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.pulls)

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / self.wall / 1e6


async def _get_blob(session: aiohttp.ClientSession, url: str, digest: str, size: int,
                    t0: float) -> Pull:
    # Hashing inline measured faster here (2 cores) than handing chunks to a thread.
    sha = hashlib.sha256()
    nbytes, ttfb = 0, 0.0
    async with session.get(url) as resp:
        if resp.status != 200:
            raise BenchError(f"GET {url} -> {resp.status}: {(await resp.read())[:300]!r}")
        async for chunk in resp.content.iter_any():
            if not nbytes:
                ttfb = time.perf_counter() - t0
            nbytes += len(chunk)
            sha.update(chunk)
    actual = "sha256:" + sha.hexdigest()
    if nbytes != size or actual != digest:
        raise BenchError(f"GET {url}: {nbytes} bytes hashing to {actual},"
                         f" expected {size} bytes with {digest}")
    return Pull(time.perf_counter() - t0, ttfb, nbytes)


async def _pull_blobs(url: str, digest: str, size: int, concurrency: int
                      ) -> tuple[float, list[Pull]]:
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT,
                                     auto_decompress=False, read_bufsize=READ_BUFSIZE) as session:
        t0 = time.perf_counter()
        pulls = await asyncio.gather(*(_get_blob(session, url, digest, size, t0)
                                       for _ in range(concurrency)))
        return time.perf_counter() - t0, list(pulls)


def pull_blobs(url: str, digest: str, size: int, concurrency: int = 1) -> Batch:
    """GET the blob at `url` with `concurrency` simultaneous connections; every body verified."""
    before = time.process_time()
    wall, pulls = asyncio.run(_pull_blobs(url, digest, size, concurrency))
    return Batch(wall, pulls, time.process_time() - before)


def curl_blobs(url: str, size: int, concurrency: int = 1) -> float:
    """Aggregate MB/s of `concurrency` parallel curl processes fetching the blob."""
    cmd = ["curl", "-sS", "-f", "-o", "/dev/null", "-w", "%{size_download}", url]
    started = time.perf_counter()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(concurrency)]
    outputs = [p.communicate(timeout=900) for p in procs]
    wall = time.perf_counter() - started
    for proc, (out, err) in zip(procs, outputs, strict=True):
        if proc.returncode != 0 or int(out or 0) != size:
            raise BenchError(f"curl {url}: rc {proc.returncode}, {out} bytes: {err}")
    return concurrency * size / wall / 1e6


# ---------------------------------------------------------------- small requests

async def _check_once(url: str, method: str, headers: dict[str, str]) -> None:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session, \
            session.request(method, url, headers=headers) as resp:
        await resp.read()
        if resp.status != 200:
            raise BenchError(f"{method} {url} -> {resp.status}")


@dataclass(frozen=True)
class RateRun:
    rate: float  # requests per second
    requests: int  # requests completed


async def _aiohttp_rate(url: str, method: str, headers: dict[str, str], connections: int,
                        duration: float) -> RateRun:
    done = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + duration

        async def worker() -> None:
            nonlocal done
            while loop.time() < deadline:
                async with session.request(method, url, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise BenchError(f"{method} {url} -> {resp.status}")
                done += 1
        start = loop.time()
        await asyncio.gather(*(worker() for _ in range(connections)))
        return RateRun(done / (loop.time() - start), done)


_AB_FIELDS = {name: re.compile(rx) for name, rx in {
    "rate": r"Requests per second:\s+([\d.]+)",
    "complete": r"Complete requests:\s+(\d+)",
    "failed": r"Failed requests:\s+(\d+)",
    "non2xx": r"Non-2xx responses:\s+(\d+)",
}.items()}


def _ab_rate(url: str, method: str, headers: dict[str, str], connections: int,
             duration: float) -> RateRun:
    # ab, not wrk: wrk 4.1 waits for a body after a HEAD response with a
    # Content-Length, so it measures 0 requests/s for HEAD.
    cmd = ["ab", "-q", "-k", "-c", str(connections), "-t", f"{duration:g}", "-n", "10000000"]
    if method == "HEAD":
        cmd.append("-i")
    elif method != "GET":
        raise ValueError(method)
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    proc = subprocess.run([*cmd, url], capture_output=True, text=True,
                          timeout=duration + 60, check=False)
    found = {k: rx.search(proc.stdout) for k, rx in _AB_FIELDS.items()}
    ok = (proc.returncode == 0 and found["rate"] is not None and found["complete"] is not None
          and found["failed"] is not None and int(found["failed"].group(1)) == 0
          and found["non2xx"] is None and int(found["complete"].group(1)) > 0)
    if not ok or found["rate"] is None or found["complete"] is None:
        raise BenchError(f"ab {method} {url}: rc {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return RateRun(float(found["rate"].group(1)), int(found["complete"].group(1)))


def rate_tool() -> str:
    return "ab -k (ApacheBench, keep-alive)" if shutil.which("ab") else "aiohttp"


def request_run(url: str, method: str, headers: dict[str, str], *, connections: int,
                duration: float) -> RateRun:
    """`method url` for `duration` seconds with `connections` open connections."""
    asyncio.run(_check_once(url, method, headers))
    if shutil.which("ab"):
        return _ab_rate(url, method, headers, connections, duration)
    return asyncio.run(_aiohttp_rate(url, method, headers, connections, duration))


def request_rate(url: str, method: str, headers: dict[str, str], *, connections: int,
                 duration: float) -> float:
    """Requests per second of `method url` with `connections` open connections."""
    return request_run(url, method, headers, connections=connections, duration=duration).rate


# ---------------------------------------------------------------- whole images

def skopeo_pull(ref: str, dest: Path, *args: str, expect: set[str]) -> float:
    """Seconds for `skopeo copy docker://ref dir:dest`; checks the expected blobs arrived."""
    started = time.perf_counter()
    skopeo_copy(ref, dest, *args)
    seconds = time.perf_counter() - started
    got = {"sha256:" + f.name for f in dest.iterdir() if len(f.name) == 64}
    if not expect <= got:
        raise BenchError(f"skopeo copy {ref}: missing blobs {sorted(expect - got)}")
    return seconds
