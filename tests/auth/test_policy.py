"""Role, scope and header decisions, as plain functions."""

from __future__ import annotations

import base64

import pytest

from lazyreg.auth.credentials import BadCredentials, Basic, Bearer, parse_authorization
from lazyreg.auth.policy import (
    BadScope,
    Identity,
    PullRule,
    allowed,
    api_need,
    grant,
    parse_scopes,
)
from lazyreg.auth.tokens import Access

ADMIN, VIEWER = Identity("root", "admin"), Identity("vera", "viewer")


@pytest.mark.parametrize(("method", "path", "need"), [
    ("GET", "/remotes/", "user"), ("HEAD", "/tasks/x/", "user"),
    ("POST", "/remotes/", "admin"), ("PATCH", "/distributions/d/", "admin"),
    ("DELETE", "/repositories/r/", "admin"), ("POST", "/tokens/", "user"),
    ("GET", "/users/", "admin"), ("GET", "/users/vera/", "user"),
    ("GET", "/users/root/", "admin"), ("PATCH", "/users/vera/", "admin"),
])
def test_api_needs(method: str, path: str, need: str) -> None:
    assert api_need(method, path, "vera") == need
    assert allowed(ADMIN, api_need(method, path, "root"))
    assert allowed(VIEWER, need) == (need == "user")  # type: ignore[arg-type]


def test_grants_only_what_the_rule_allows() -> None:
    rules = {"pub": PullRule(False, frozenset()), "priv": PullRule(True, frozenset({"vera"})),
             "other": PullRule(True, frozenset({"bob"}))}
    asked = parse_scopes(["repository:pub:pull repository:priv:pull,push",
                          "repository:other:pull", "repository:nowhere:pull",
                          "registry:catalog:*", "repository:pub:push"])
    scopes = lambda who: {a.scope() for a in grant(asked, who, rules.get)}  # noqa: E731
    assert scopes(None) == {"repository:pub:pull"}
    assert scopes(VIEWER) == {"repository:pub:pull", "repository:priv:pull"}
    assert scopes(ADMIN) == {"repository:pub:pull", "repository:priv:pull",
                             "repository:other:pull"}


def test_scope_parsing_keeps_ports_and_refuses_junk() -> None:
    assert parse_scopes(["repository:host:5000/app:pull"]) == [
        Access("repository", "host:5000/app", ("pull",))]
    for bad in (["nonsense"], ["repository::pull"], ["repository:x:"], ["x" * 600],
                [" ".join(f"repository:r{i}:pull" for i in range(40))]):
        with pytest.raises(BadScope):
            parse_scopes(bad)


def _basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


def test_authorization_headers() -> None:
    assert parse_authorization(None) is None
    assert parse_authorization(_basic(b"u:p:w")) == Basic("u", "p:w")
    assert parse_authorization("Bearer abc") == Bearer("abc")
    for bad in ("Basic", "Basic !!!", _basic(b"nocolon"), _basic(b":pw"),
                _basic(b"\xff\xfe:x"), _basic(b"u" * 10_000 + b":p"), "Bearer ",
                "Bearer a b", "Digest x=1", "Bearer " + "x" * 10_000, "x" * 40_000):
        with pytest.raises(BadCredentials):
            parse_authorization(bad)
