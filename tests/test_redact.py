"""Credentials never reach a text people see: URLs in messages and log records."""

from __future__ import annotations

import logging

import pytest

from lazyreg.redact import RedactingFilter, decode_userinfo, redact, split_userinfo


def test_redact_removes_userinfo_wherever_it_is() -> None:
    text = ("GET https://bob:s3cr%40t@reg.example/v2/: failed; proxy http://p:pw@10.0.0.1:3128"
            " and 'ftp://user@host/x'")
    out = redact(text)
    assert "s3cr" not in out and ":pw@" not in out and "user@" not in out
    assert "https://***@reg.example/v2/" in out and "http://***@10.0.0.1:3128" in out
    assert redact("no url here: a@b") == "no url here: a@b"


def test_split_and_decode_userinfo() -> None:
    assert split_userinfo("https://bob:s3cr%40t@reg.example:5000/x") == (
        "https://reg.example:5000/x", "bob:s3cr%40t")
    assert decode_userinfo("bob:s3cr%40t") == ("bob", "s3cr@t")
    assert decode_userinfo("bob") == ("bob", None)
    assert split_userinfo("https://reg.example") == ("https://reg.example", None)


def test_log_filter_redacts_messages_arguments_and_tracebacks(
        caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.redact")
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="tests.redact"):
        logger.info("retrying %s", "http://u:topsecret@h/v2/")
        try:
            raise RuntimeError("cannot reach http://u:topsecret@h/")
        except RuntimeError:
            logger.exception("failed")
    assert "topsecret" not in caplog.text
    assert "http://***@h/v2/" in caplog.text and "RuntimeError" in caplog.text
