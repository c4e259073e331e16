"""Request ids and log lines: sane ids kept, others replaced; one line per record, text or JSON."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from lazyreg.observe.logs import (
    MAX_REQUEST_ID,
    REQUEST_ID,
    JsonFormatter,
    RequestIdFilter,
    TextFormatter,
    request_id_for,
)


@pytest.mark.parametrize("incoming", ["abc-123", "7f3a9c", "a.b:c_d", "x" * MAX_REQUEST_ID])
def test_a_sane_incoming_id_is_kept(incoming: str) -> None:
    assert request_id_for(incoming) == incoming


@pytest.mark.parametrize("incoming", [
    None, "", "x" * (MAX_REQUEST_ID + 1), "has space", "line\nbreak", "quote\"", "é",
    "a;b", "<script>", "x" * 100_000])
def test_anything_else_gets_a_new_id(incoming: str | None) -> None:
    rid = request_id_for(incoming)
    assert rid != incoming
    assert len(rid) == 32 and all(c in "0123456789abcdef" for c in rid)
    assert request_id_for(None) != rid  # random, not a constant


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("lazyreg.test", logging.INFO, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_text_line_carries_the_request_id_and_stays_one_line() -> None:
    token = REQUEST_ID.set("req-1")
    try:
        rec = record("GET %s", "/v2/a\nINFO forged line")
        assert RequestIdFilter().filter(rec)
    finally:
        REQUEST_ID.reset(token)
    line = TextFormatter().format(rec)
    assert "\n" not in line
    assert line.endswith("GET /v2/a\\nINFO forged line request_id=req-1")
    assert " INFO lazyreg.test: " in line


def test_outside_a_request_there_is_no_id() -> None:
    rec = record("started")
    RequestIdFilter().filter(rec)
    assert "request_id" not in TextFormatter().format(rec)


def test_json_line_has_the_fields() -> None:
    rec = record("GET %s %d", "/x", 200, request_id="req-2",
                 fields={"status": 200, "path": "/x", "message": "not this one"})
    entry = json.loads(JsonFormatter().format(rec))
    assert entry["message"] == "GET /x 200"  # a field never overrides the line's own keys
    assert (entry["request_id"], entry["status"], entry["path"]) == ("req-2", 200, "/x")
    assert entry["level"] == "INFO" and entry["logger"] == "lazyreg.test"
    assert entry["time"].endswith("+00:00")


def test_exceptions_follow_the_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = TextFormatter().format(rec)
    assert text.splitlines()[0].endswith("failed")
    assert "ValueError: boom" in text
    rec.exc_text = None
    assert "ValueError: boom" in json.loads(JsonFormatter().format(rec))["exception"]
