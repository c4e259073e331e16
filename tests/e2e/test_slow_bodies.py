"""Issue 20, finding 5: a body dripped byte by byte is cut off at the one body deadline,
and a stop drains within a bounded time, whatever the clients do.

A real `lazyreg serve` with auth on and a viewer's token; the drippers send
`POST /api/v1/tokens/` heads at once and then one body byte every half second,
as in the attack that kept 75 of them open past 45 s and a SIGTERM past 10 s.
"""

from __future__ import annotations

import asyncio
import base64
import signal
import time
from pathlib import Path

import pytest

from lazyreg.serve import LINGER_TIME
from tests.rig import Lazyreg, http_json, start_lazyreg

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "e2e-admin-password"
DRIPPERS = 40
BODY = 1000  # bytes announced; a byte goes every DRIP seconds
DRIP = 0.5


def start(data_dir: Path, **env: str) -> tuple[Lazyreg, str]:
    server = start_lazyreg(data_dir, env={"LAZYREG_AUTH": "on",
                                          "LAZYREG_ADMIN_PASSWORD": ADMIN_PASSWORD, **env})
    admin = {"Authorization": "Basic " + base64.b64encode(
        f"admin:{ADMIN_PASSWORD}".encode()).decode()}
    status, _ = http_json("POST", f"{server.url}/api/v1/users/",
                          {"username": "vera", "password": "vera-password", "role": "viewer"},
                          admin)
    assert status == 201
    vera = {"Authorization": "Basic " + base64.b64encode(b"vera:vera-password").decode()}
    status, answer = http_json("POST", f"{server.url}/api/v1/tokens/", {}, vera)
    assert status == 201
    return server, answer["token"]


async def drip(port: int, token: str, stop: asyncio.Event) -> tuple[bytes, float]:
    """Drip a token request's body until the server answers or hangs up (or `stop`);
    what it answered, and when (seconds after the head went)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(f"POST /api/v1/tokens/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                 f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {BODY}\r\n\r\n{{".encode())
    await writer.drain()
    answer = b""

    async def keep_dripping() -> None:
        try:
            while not stop.is_set():
                await asyncio.sleep(DRIP)
                writer.write(b" ")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
    dripping = asyncio.create_task(keep_dripping())
    try:
        while chunk := await reader.read(65536):  # to the server's hang-up
            answer += chunk
    except (ConnectionError, OSError):
        pass
    finally:
        dripping.cancel()
        writer.close()
    return answer, time.monotonic() - started


def test_a_dripped_token_body_is_cut_off_at_the_deadline(tmp_path: Path) -> None:
    server, token = start(tmp_path / "data", LAZYREG_BODY_TIMEOUT="3")
    port = int(server.url.rsplit(":", 1)[1])

    async def run() -> list[tuple[bytes, float]]:
        stop = asyncio.Event()
        try:
            async with asyncio.timeout(60):
                return await asyncio.gather(*(drip(port, token, stop)
                                              for _ in range(DRIPPERS)))
        finally:
            stop.set()
    try:
        answers = asyncio.run(run())
        for answer, seconds in answers:
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
            assert b"did not arrive within 3 s" in answer
            # Cut off at the deadline, and the connection closed after LINGER_TIME.
            assert 2.5 < seconds < 3 + LINGER_TIME + 5, seconds
        # The server is as it was: it answers, and no token was issued to a dripper.
        assert http_json("GET", f"{server.url}/api/v1/status/", None,
                         {"Authorization": f"Bearer {token}"})[0] == 200
    finally:
        server.stop()


def test_a_stop_drains_in_bounded_time_with_dripping_clients(tmp_path: Path) -> None:
    # The body deadline far away: only the stop's own bound can end these requests.
    server, token = start(tmp_path / "data", LAZYREG_BODY_TIMEOUT="120",
                          LAZYREG_SHUTDOWN_TIMEOUT="2")
    port = int(server.url.rsplit(":", 1)[1])

    async def run() -> float:
        stop = asyncio.Event()
        drippers = [asyncio.create_task(drip(port, token, stop)) for _ in range(DRIPPERS)]
        await asyncio.sleep(2)  # every head sent, every body under way
        assert not any(d.done() for d in drippers)
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        while server.proc.poll() is None:
            assert time.monotonic() - signalled < 30, "the stop did not end in 30 s"
            await asyncio.sleep(0.1)
        ended = time.monotonic() - signalled
        stop.set()
        await asyncio.gather(*drippers, return_exceptions=True)
        return ended
    try:
        seconds = asyncio.run(run())
        # At most twice shutdown_timeout (wait, then cancel), and the cleanup.
        assert seconds < 2 * 2 + 6, seconds
        assert server.proc.returncode == 0
    finally:
        server.kill() if server.proc.poll() is None else None
