"""Log lines with request ids, as text (default) or one JSON object per line.

A request's id is the client's `X-Request-Id` when it is sane (1 to
MAX_REQUEST_ID characters of letters, digits and `._:-`), else a new random
one; it is sent back as `X-Request-Id`. While a request is handled its id is
in `REQUEST_ID` (a context variable), so every log line written meanwhile
carries it, and so does work the request started in the background (a task,
a download), since asyncio copies the context into new tasks.

Text lines: `<time> <LEVEL> <logger>: <message> request_id=<id>`. JSON lines:
`{"time", "level", "logger", "message", "request_id", ...}` plus the fields a
line was given with `extra={"fields": {...}}` (the request log's method,
path, status...). Either way a line is one line: a message's line breaks are
escaped, so no input can forge a log line.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import time
from contextvars import ContextVar
from typing import Any, Literal

LogFormat = Literal["text", "json"]

MAX_REQUEST_ID = 64
_SANE_ID = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_REQUEST_ID}}}")

REQUEST_ID: ContextVar[str | None] = ContextVar("lazyreg_request_id", default=None)


def request_id_for(incoming: str | None) -> str:
    """The client's request id if it is sane, else a new one."""
    if incoming is not None and _SANE_ID.fullmatch(incoming):
        return incoming
    return secrets.token_hex(16)


class RequestIdFilter(logging.Filter):
    """Stamps every record with the current request id (None outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


def _one_line(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


class _Clock:
    """`created` as text, the second part formatted once per second (a line per request)."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def local(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second, self._text = second, time.strftime("%Y-%m-%d %H:%M:%S",
                                                             time.localtime(second))
        return f"{self._text},{int((created - second) * 1000):03d}"

    def utc(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second, self._text = second, time.strftime("%Y-%m-%dT%H:%M:%S",
                                                             time.gmtime(second))
        return f"{self._text}.{int((created - second) * 1000):03d}+00:00"


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._clock = _Clock()

    def format(self, record: logging.LogRecord) -> str:
        line = (f"{self._clock.local(record.created)} {record.levelname} {record.name}:"
                f" {_one_line(record.getMessage())}")
        request_id = getattr(record, "request_id", None)
        if request_id:
            line += f" request_id={request_id}"
        # A traceback keeps its lines: they follow the record's own line.
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._clock = _Clock()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._clock.utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                entry.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False)


def formatter(fmt: LogFormat) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter()


def configure(fmt: LogFormat = "text", level: str = "info",
              filters: tuple[logging.Filter, ...] = ()) -> logging.Handler:
    """Send every log record to stderr, one line each, in `fmt`; the handler installed.

    `filters` (e.g. one that redacts credentials) run on every record.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    handler.addFilter(RequestIdFilter())
    for extra in filters:
        handler.addFilter(extra)
    # Where in the source a record was made, and which thread or process made it, is in no
    # line: skip looking them up (the logging HOWTO's "Optimization"), per request it adds up.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # ours is lazyreg.access
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return handler
