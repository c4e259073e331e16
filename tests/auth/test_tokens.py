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
ALICE = tokens.Holder(7, 3, "alice")


def test_registry_token_round_trip_grants_exactly_its_scopes() -> None:
    issued = tokens.issue_registry_token(
        KEY, ALICE, [Access("repository", "team/app", ("pull",))], 300)
    assert issued.expires - time.time() == pytest.approx(300, abs=2)
    claims = tokens.read_registry_token(KEY, issued.token)
    assert (claims.account, claims.generation) == (7, 3)
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
    return {"iss": "lazyreg", "aud": "lazyreg", "sub": "7", "iat": now, "nbf": now,
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
    pytest.param(jwt.encode(_claims(sub="alice"), KEY, algorithm="HS256"), id="name-subject"),
    pytest.param(jwt.encode(_claims(gen="1"), KEY, algorithm="HS256"), id="bad-generation"),
    pytest.param("a.b.c", id="garbage"),
    pytest.param("x" * 10_000, id="10KB"),
    pytest.param("", id="empty"),
])
def test_forged_expired_or_foreign_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidToken):
        tokens.read_registry_token(KEY, token)


def test_api_and_registry_tokens_do_not_stand_in_for_each_other() -> None:
    api = tokens.issue_account_token(KEY, ALICE, 600)
    claims = tokens.read_account_token(KEY, api.token)
    assert (claims.account, claims.generation, claims.id) == (7, 3, api.id)
    assert api.expires_at.tzinfo is not None
    with pytest.raises(InvalidToken):
        tokens.read_registry_token(KEY, api.token)
    with pytest.raises(InvalidToken):
        tokens.read_account_token(KEY, api.token, refresh=True)
    registry = tokens.issue_registry_token(KEY, ALICE, [], 300)
    with pytest.raises(InvalidToken):
        tokens.read_account_token(KEY, registry.token)
    refresh = tokens.issue_account_token(KEY, ALICE, 600, refresh=True)
    with pytest.raises(InvalidToken):
        tokens.read_account_token(KEY, refresh.token)
    with pytest.raises(InvalidToken, match="expired"):
        tokens.read_account_token(KEY, tokens.issue_account_token(KEY, ALICE, -60).token)


def test_a_token_never_outlives_the_bound_it_is_given() -> None:
    parent = int(time.time()) + 90
    child = tokens.issue_account_token(KEY, ALICE, 30 * 86400, expires=parent)
    assert child.expires == parent
    assert tokens.read_account_token(KEY, child.token).expires == parent
