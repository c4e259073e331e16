"""Pull-through in the management API: remotes without upstream_name, the distribution's
two kinds and their validation, and what deleting a remote they use does."""

from __future__ import annotations

import pytest

from tests.api.conftest import Client, delete, get, patch, post


async def test_a_remote_of_pull_through_needs_only_a_url(client: Client) -> None:
    remote = await post(client, "remotes/", {"name": "hub", "url": "https://r.example.test"})
    assert remote["upstream_name"] is None
    assert (remote["tag_ttl"], remote["negative_ttl"]) == (300, 30)
    await post(client, "repositories/", {"name": "r"})
    error = await post(client, "repositories/r/sync/", {"remote": "hub"}, status=400)
    assert error["field"] == "remote" and "no upstream_name" in error["detail"]
    changed = await patch(client, "remotes/hub/", {"tag_ttl": 0, "include_names": ["library/*"]})
    assert (changed["tag_ttl"], changed["include_names"]) == (0, ["library/*"])
    assert changed["upstream_name"] is None


@pytest.mark.parametrize(("field", "value"), [
    ("include_names", ["Library/*"]), ("exclude_names", ["a b"]), ("include_names", [""]),
    ("include_names", ["x"] * 101), ("tag_ttl", -1), ("negative_ttl", 31 * 86400),
    ("tag_ttl", "300"),
])
async def test_bad_pull_through_settings(client: Client, field: str, value: object) -> None:
    body = {"name": "hub", "url": "https://r.example.test", field: value}
    assert (await post(client, "remotes/", body, status=400))["field"] == field


async def test_the_two_kinds_of_distribution(client: Client) -> None:
    await post(client, "remotes/", {"name": "hub", "url": "https://r.example.test"})
    await post(client, "repositories/", {"name": "r"})
    base = {"name": "d", "base_path": "hub", "pull_through": True}
    error = await post(client, "distributions/", base, status=400)
    assert error["field"] == "remote"
    error = await post(client, "distributions/", {**base, "remote": "hub", "repository": "r"},
                       status=400)
    assert error["field"] == "repository"
    error = await post(client, "distributions/", {**base, "remote": "nope"}, status=400)
    assert error == {"detail": "remote 'nope' not found", "field": "remote"}
    error = await post(client, "distributions/", {"name": "d", "base_path": "x",
                                                  "repository": "r", "remote": "hub"},
                       status=400)
    assert error["field"] == "remote"
    root = await post(client, "distributions/", {**base, "base_path": "", "remote": "hub"})
    assert (root["base_path"], root["repository"], root["remote"]) == ("", "", "hub")
    error = await post(client, "distributions/", {**base, "name": "e", "base_path": "",
                                                  "remote": "hub"}, status=409)
    assert error["field"] == "base_path"

    # PATCH from one kind to the other drops what the other kind has.
    error = await patch(client, "distributions/d/", {"pull_through": False}, status=400)
    assert error["field"] == "repository"
    error = await patch(client, "distributions/d/", {"pull_through": False, "repository": "r"},
                        status=400)
    assert error["field"] == "base_path"  # empty only for pull-through
    plain = await patch(client, "distributions/d/", {"pull_through": False, "repository": "r",
                                                     "base_path": "r"})
    assert (plain["pull_through"], plain["remote"], plain["repository"]) == (False, None, "r")
    again = await patch(client, "distributions/d/", {"pull_through": True, "remote": "hub"})
    assert (again["pull_through"], again["remote"], again["repository"]) == (True, "hub", "")


async def test_deleting_the_remote_of_a_pull_through_distribution(client: Client) -> None:
    await post(client, "remotes/", {"name": "hub", "url": "https://r.example.test"})
    await post(client, "distributions/", {"name": "d", "base_path": "hub", "remote": "hub",
                                          "pull_through": True})
    resp = await client.delete("/api/v1/remotes/hub/")
    assert resp.status == 409
    assert "upstream of pull-through distributions: d" in (await resp.json())["detail"]
    await delete(client, "remotes/hub/?force=true")
    shown = await get(client, "distributions/d/")
    assert (shown["pull_through"], shown["remote"]) == (True, None)
    # With no remote it serves only what is stored: a new name is unavailable, not a 500.
    resp = await client.get("/v2/hub/library/alpine/manifests/3.20")
    assert resp.status == 503
    assert (await resp.json())["errors"][0]["code"] == "UNAVAILABLE"
