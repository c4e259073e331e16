"""The REST client against a hostile server: every odd answer is one `error:` line.

A small stdlib HTTP server answers whatever the test sets: no JSON, too much,
an error page, half an answer, or nothing at all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lazyreg.cli import main

Answer = Callable[[BaseHTTPRequestHandler], None]


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    answer: Answer
    release = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class Handler(BaseHTTPRequestHandler):
    server: Server

    def do_GET(self) -> None:
        self.server.answer(self)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server(("127.0.0.1", 0), Handler)
    running.release = threading.Event()
    thread = threading.Thread(target=running.serve_forever, args=(0.05,),
                              name="hostile-server")
    thread.start()
    yield running
    running.release.set()
    running.shutdown()
    running.server_close()
    thread.join(10)


def send(status: int, body: bytes, length: int | None = None) -> Answer:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body) if length is None else length))
        handler.end_headers()
        handler.wfile.write(body)
    return answer


def run(server: Server, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["--server", server.url, "status"])
    captured = capsys.readouterr()
    assert captured.out == ""
    return code, captured.err


def test_an_answer_that_is_not_json(server: Server,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    server.answer = send(200, b"<html>hello</html>")
    assert run(server, capsys) == (1, "error: the answer to GET status/ is not JSON\n")


def test_an_answer_too_large(server: Server, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lazyreg.cli.client.MAX_ANSWER", 100)
    server.answer = send(200, b"[" + b"1," * 100 + b"1]")
    assert run(server, capsys) == (
        1, "error: the answer to GET status/ is larger than 100 bytes\n")


def test_errors_say_the_detail_or_the_status(server: Server,
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    server.answer = send(409, b'{"detail": "it clashes", "field": null}')
    assert run(server, capsys) == (1, "error: it clashes\n")
    server.answer = send(500, b"<html>Internal Server Error</html>")
    assert run(server, capsys) == (1, "error: HTTP 500 Internal Server Error\n")
    monkeypatch.setattr("lazyreg.cli.client.MAX_ERROR", 50)
    server.answer = send(400, b'{"detail": "' + b"x" * 100 + b'"}')  # only 50 bytes read
    assert run(server, capsys) == (1, "error: HTTP 400 Bad Request\n")


def test_half_an_answer(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    server.answer = send(200, b'{"version": ', length=1000)
    assert run(server, capsys) == (
        1, f"error: broken answer from {server.url}: IncompleteRead\n")


def test_a_server_that_never_answers(server: Server, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lazyreg.cli.client.TIMEOUT", 0.2)

    def never(handler: BaseHTTPRequestHandler) -> None:
        server.release.wait(30)
    server.answer = never
    assert run(server, capsys) == (1, f"error: cannot reach {server.url}: timed out\n")
