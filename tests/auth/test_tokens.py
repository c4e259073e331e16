"""JWTs: what is issued reads back, and nothing forged, expired or of the wrong kind does."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from lazyreg.auth import tokens
from lazyreg.auth.tokens import Access, InvalidToken

KEY = b"k" * 32


def test_registry_token_round_trip_grants_exactly_its_scopes() -> None:
    token, expires = tokens.issue_registry_token(
        KEY, "alice", [Access("repository", "team/app", ("pull",))], 300)
    assert expires - time.time() == pytest.approx(300, abs=2)
    claims = tokens.read_registry_token(KEY, token)
    assert claims.subject == "alice"
    assert claims.allows("team/app")
    assert not claims.allows("team/app", "push")
    assert not claims.allows("team/other")
    assert not claims.allows("team")


def _unsigned(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _claims(**extra: object) -> dict[str, object]:
    now = int(time.time())
    return {"iss": "lazyreg", "aud": "lazyreg", "sub": "alice", "iat": now, "nbf": now,
            "exp": now + 300, "access": [{"type": "repository", "name": "x",
                                          "actions": ["pull"]}], **extra}


@pytest.mark.parametrize("token", [
    pytest.param(_unsigned(_claims()), id="alg-none"),
    pytest.param(jwt.encode(_claims(), b"another key" * 3, algorithm="HS256"), id="wrong-key"),
    pytest.param(jwt.encode(_claims(exp=int(time.time()) - 60), KEY, algorithm="HS256"),
                 id="expired"),
    pytest.param(jwt.encode(_claims(aud="lazyreg-api"), KEY, algorithm="HS256"),
                 id="api-audience"),
    pytest.param(jwt.encode(_claims(iss="someone"), KEY, algorithm="HS256"), id="issuer"),
    pytest.param(jwt.encode(_claims(access="everything"), KEY, algorithm="HS256"),
                 id="access-not-a-list"),
    pytest.param(jwt.encode(_claims(access=[{"type": "repository", "name": 1}]), KEY,
                            algorithm="HS256"), id="access-bad-entry"),
    pytest.param(jwt.encode({k: v for k, v in _claims().items() if k != "exp"}, KEY,
                            algorithm="HS256"), id="no-expiry"),
    pytest.param(jwt.encode(_claims(), KEY * 2, algorithm="HS512"), id="other-algorithm"),
    pytest.param("a.b.c", id="garbage"),
    pytest.param("x" * 10_000, id="10KB"),
    pytest.param("", id="empty"),
])
def test_forged_expired_or_foreign_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidToken):
        tokens.read_registry_token(KEY, token)


def test_api_and_registry_tokens_do_not_stand_in_for_each_other() -> None:
    api, expires = tokens.issue_api_token(KEY, "alice", 600)
    assert tokens.read_api_token(KEY, api) == "alice"
    assert expires.tzinfo is not None
    with pytest.raises(InvalidToken):
        tokens.read_registry_token(KEY, api)
    registry, _ = tokens.issue_registry_token(KEY, "alice", [], 300)
    with pytest.raises(InvalidToken):
        tokens.read_api_token(KEY, registry)
    with pytest.raises(InvalidToken, match="expired"):
        tokens.read_api_token(KEY, tokens.issue_api_token(KEY, "alice", -60)[0])
