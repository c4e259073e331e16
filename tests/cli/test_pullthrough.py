"""Pull-through from the command line: a distribution of a whole upstream, and the
repositories its first pulls create (named with slashes) managed like any other."""

from __future__ import annotations

import urllib.request

from tests.cli.conftest import Runner, Servers, table_row


def pull(servers: Servers, path: str) -> tuple[int, str]:
    req = urllib.request.Request(f"{servers.url}/v2/{path}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, resp.headers["Docker-Content-Digest"]


def test_pull_through_distribution_and_the_repositories_it_creates(
        cli: Runner, servers: Servers) -> None:
    remote = cli("-o", "json", "remote", "create", "up", "--url", servers.upstream_url,
                 "--tag-ttl", "60", "--negative-ttl", "5", "--include-names", "library/*",
                 "--exclude-names", "library/secret*")
    assert remote.code == 0, remote.err
    assert remote.json()["upstream_name"] is None
    assert (remote.json()["tag_ttl"], remote.json()["negative_ttl"]) == (60, 5)
    assert remote.json()["include_names"] == ["library/*"]
    created = cli("-o", "json", "distribution", "create", "hub", "--base-path", "hub",
                  "--remote", "up", "--pull-through", "--no-anonymous-pull-through")
    assert created.code == 0, created.err
    assert created.json()["pull_through"] is True
    assert created.json()["remote"] == "up"
    assert created.json()["anonymous_pull_through"] is False
    assert table_row(cli("distribution", "list").out, "hub") == [
        "hub", "hub", "pull-through: up", "-", "no"]

    assert pull(servers, "hub/library/app/manifests/v1") == (200, servers.upstream.tags["v1"])
    listed = cli("repository", "list")
    assert table_row(listed.out, "hub/library/app") == ["hub/library/app", "1", "1",
                                                        "pulled through distribution 'hub'"]
    shown = cli("-o", "json", "repository", "show", "hub/library/app").json()
    assert shown["retain_versions"] == 1
    assert shown["versions_href"] == "/api/v1/repositories/hub%2Flibrary%2Fapp/versions/"
    assert pull(servers, "hub/library/app/manifests/v2")[0] == 200
    versions = cli("-o", "json", "repository", "versions", "hub/library/app").json()
    assert [v["number"] for v in versions["results"]] == [2]  # retain_versions 1
    kept = cli("-o", "json", "repository", "update", "hub/library/app",
               "--retain-versions", "3")
    assert kept.json()["retain_versions"] == 3
    assert cli("repository", "delete", "hub/library/app").code == 0
    assert cli("repository", "show", "hub/library/app").code == 1


def test_a_pull_through_distribution_needs_a_remote_and_no_repository(
        cli: Runner, servers: Servers) -> None:
    assert cli("remote", "create", "up", "--url", servers.upstream_url).code == 0
    assert cli("repository", "create", "r").code == 0
    no_remote = cli("distribution", "create", "hub", "--base-path", "hub", "--pull-through")
    assert no_remote.err.startswith("error: remote: a pull-through distribution needs")
    both = cli("distribution", "create", "hub", "--base-path", "hub", "--pull-through",
               "--remote", "up", "--repository", "r")
    assert both.err.startswith("error: repository: a pull-through distribution serves")
    root = cli("-o", "json", "distribution", "create", "root", "--base-path", "",
               "--pull-through", "--remote", "up")
    assert root.code == 0, root.err
    assert root.json()["base_path"] == ""
    empty = cli("distribution", "create", "x", "--base-path", "", "--repository", "r")
    assert empty.err.startswith("error: base_path: empty only for a pull-through")
    sync = cli("repository", "sync", "r", "--remote", "up")
    assert sync.err.startswith("error: remote: remote 'up' has no upstream_name")
    busy = cli("remote", "delete", "up")
    assert busy.err.startswith("error: remote 'up' is the upstream of pull-through"
                               " distributions: root")
