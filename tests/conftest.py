"""Fixtures for the real parts: an upstream registry seeded once per session, lazyreg servers."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres import PostgresServer, start_postgres
from tests.rig import Lazyreg, Upstream, start_lazyreg, start_upstream
from tests.s3rig import S3Server, start_s3
from tests.sqlite import migrated_template


@pytest.fixture(autouse=True)
def no_exec_of_the_test_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """`lazyreg serve` becomes the server with exec: run in a test's own process (not as a
    subprocess), it would replace pytest. Such a test fails here instead."""
    def refuse(*_args: object) -> None:
        raise AssertionError("exec in the test process: run `lazyreg serve` as a subprocess,"
                             " or patch lazyreg.cli.serve.os.execve")
    monkeypatch.setattr("lazyreg.cli.serve.os.execve", refuse)


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed: run `make test`, which installs it")


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated once per session, for tests to copy (tests/sqlite.py)."""
    return migrated_template(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="session")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    """No-auth upstream with every fixture (64 MiB big image, 200 many tags)."""
    _need("docker-registry")
    up = start_upstream(tmp_path_factory.mktemp("upstream-none"), seed=[])
    yield up
    up.stop()


def _small_upstream(factory: pytest.TempPathFactory, auth: str) -> Iterator[Upstream]:
    up = start_upstream(factory.mktemp(f"upstream-{auth}"), auth=auth,
                        seed=["--big-mib", "0", "--many-tags", "3"])
    yield up
    up.stop()


@pytest.fixture(scope="session")
def upstream_basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    """Basic-auth upstream (testuser/testpassword), small fixtures only."""
    yield from _small_upstream(tmp_path_factory, "basic")


@pytest.fixture(scope="session")
def upstream_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    """Bearer-token upstream with its token server, small fixtures only."""
    yield from _small_upstream(tmp_path_factory, "token")


# For a test that runs on both storage backends:
#   @ON_BOTH_BACKENDS
#   def test_x(lazyreg: Lazyreg) -> None: ...
ON_BOTH_BACKENDS = pytest.mark.parametrize("lazyreg", ["filesystem", "s3"], indirect=True)
# For a test that starts its servers itself: `start_lazyreg(..., env={**storage_env, ...})`.
ON_BOTH_STORES = pytest.mark.parametrize("storage_env", ["filesystem", "s3"], indirect=True)


@pytest.fixture
def storage_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """LAZYREG_* variables for the parameter's storage backend: none for the filesystem,
    a bucket of its own on the session's S3 server for "s3"."""
    if getattr(request, "param", "filesystem") != "s3":
        return {}
    s3: S3Server = request.getfixturevalue("s3_server")
    return s3.env(s3.new_bucket())


@pytest.fixture
def lazyreg(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lazyreg]:
    """A fresh lazyreg server (SQLite, local storage) on a free port; with the parameter
    "s3" (`ON_BOTH_BACKENDS`), storing in a bucket of its own on the session's S3 server."""
    env = None
    if getattr(request, "param", "filesystem") == "s3":
        s3: S3Server = request.getfixturevalue("s3_server")
        env = s3.env(s3.new_bucket())
    server = start_lazyreg(tmp_path / "data", env=env)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    if server is None:
        pytest.fail("no PostgreSQL server binaries: run `make test`, which installs them")
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    return postgres.create_database()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """The real S3 server (tests/s3rig.py), started once; each test makes its own bucket."""
    server = start_s3(tmp_path_factory.mktemp("s3"))
    yield server
    server.stop()
