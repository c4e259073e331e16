"""A throwaway PostgreSQL server on a free loopback port, for the tests that need one."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.rig import free_port, run


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return Path(found[-1]).parent if found else None


def _as_postgres(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class PostgresServer:
    dir: Path
    port: int
    bindir: Path

    def url(self, database: str) -> str:
        return f"postgresql://lazyreg@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        run([str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "lazyreg",
             "-d", "postgres", "-qc", f"CREATE DATABASE {name}"])
        return self.url(name)

    def halt(self) -> None:
        """Stop the server, keeping its data: `resume` starts it again on the same port."""
        run(_as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.dir / "data"), "-m",
                          "fast", "-w", "stop"]), timeout=60)

    def resume(self) -> None:
        _pg_start(self.bindir, self.dir, self.port)

    def stop(self) -> None:
        subprocess.run(_as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.dir / "data"),
                                     "-m", "fast", "stop"]), capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


def _pg_start(bindir: Path, workdir: Path, port: int) -> None:
    run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(workdir / "data"), "-l",
                      str(workdir / "log"), "-w", "-o",
                      f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
                      " -c max_connections=200", "start"]), timeout=120)


def start_postgres() -> PostgresServer | None:
    bindir = _bindir()
    if bindir is None:
        return None
    # Not under pytest's tmp dir: the postgres user cannot enter root's 0700 directories.
    workdir = Path(tempfile.mkdtemp(prefix="lazyreg-pg-", dir="/tmp"))
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres", "postgres")
    port = free_port()
    run(_as_postgres([str(bindir / "initdb"), "-D", str(workdir / "data"), "-A", "trust",
                      "-U", "lazyreg", "--no-sync"]))
    _pg_start(bindir, workdir, port)
    return PostgresServer(workdir, port, bindir)
