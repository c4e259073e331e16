"""Credentials out of text that people see: URLs, errors, log lines.

`redact` replaces the user information of any URL (`scheme://user:pw@host`)
with `***`, wherever it appears in a text; `RedactingFilter` does the same to
every log record. URLs are stored without credentials in the first place
(`split_userinfo`); this is the second line of defence.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote, urlsplit, urlunsplit

# scheme://userinfo@ — userinfo is anything up to '@' without '/', whitespace or quotes.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s'\"<>]+@")


def redact(text: str) -> str:
    if "@" not in text:  # most text, every log line among it: no regex scan
        return text
    return _USERINFO.sub(r"\g<scheme>***@", text)


def split_userinfo(url: str) -> tuple[str, str | None]:
    """The URL without user information, and that information as written (encoded)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    clean = urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment))
    return clean, userinfo


def decode_userinfo(userinfo: str) -> tuple[str | None, str | None]:
    """Username and password (None when absent) of `user[:password]`, percent-decoded."""
    user, colon, password = userinfo.partition(":")
    return unquote(user) or None, unquote(password) if colon else None


def with_userinfo(url: str, userinfo: str | None) -> str:
    """`url` with `userinfo` (already percent-encoded) put back in front of its host."""
    if not userinfo:
        return url
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, f"{userinfo}@{parts.netloc}", parts.path, parts.query,
                       parts.fragment))


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with URL credentials redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string is the logging module's to report
            return True
        cleaned = redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks print str(exc), which may hold a URL: render them here, redacted.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True
