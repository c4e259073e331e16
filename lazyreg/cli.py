"""`lazyreg`: the command line, a client of the REST API (and `lazyreg serve`, the server).

It talks to the server with the standard library's urllib only. Every failure
(an HTTP error with its `detail`, an unreachable server, a bad argument) ends
as one `error: ...` line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

import lazyreg

DEFAULT_SERVER = "http://127.0.0.1:5000"
POLL_INTERVAL = 0.3
FINAL_STATES = ("completed", "failed", "canceled")
COUNTERS = ("tags", "manifests", "blobs")
TIMEOUT = 60.0


class CliError(Exception):
    """A failure to report on one line; the message says what went wrong."""


class Output(StrEnum):
    table = "table"
    json = "json"


class Policy(StrEnum):
    immediate = "immediate"
    on_demand = "on_demand"
    streamed = "streamed"


# --- talking to the server -------------------------------------------------


@dataclass
class Client:
    server: str

    def url(self, path: str, query: dict[str, Any] | None = None) -> str:
        base = f"{self.server.rstrip('/')}/api/v1/{path.lstrip('/')}"
        given = {k: v for k, v in (query or {}).items() if v is not None}
        return f"{base}?{urllib.parse.urlencode(given)}" if given else base

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                query: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url(path, query), data=data, method=method,
                                     headers={"Accept": "application/json",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise CliError(_http_error(exc)) from None
        except urllib.error.URLError as exc:
            raise CliError(f"cannot reach {self.server}: {exc.reason}") from None
        except (TimeoutError, ConnectionError) as exc:
            raise CliError(f"cannot reach {self.server}: {exc}") from None
        return json.loads(raw) if raw else None

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, query=query)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, body)

    def patch(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("PATCH", path, body)

    def delete(self, path: str) -> None:
        self.request("DELETE", path)


def _http_error(exc: urllib.error.HTTPError) -> str:
    try:
        detail = json.loads(exc.read()).get("detail")
    except (ValueError, AttributeError, OSError):
        detail = None
    return str(detail) if detail else f"HTTP {exc.code} {exc.reason}"


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


# --- showing answers -------------------------------------------------------


@dataclass
class Cli:
    client: Client
    output: Output

    @property
    def out(self) -> Console:
        # Piped output keeps whole lines (digests!) rather than wrapping at 80 columns.
        console = Console(soft_wrap=False)
        return console if console.is_terminal else Console(width=240)

    def emit(self, data: Any, render: Callable[[Any], None]) -> None:
        if self.output is Output.json:
            print(json.dumps(data, indent=2))
        else:
            render(data)


def _cell(value: Any) -> Text:
    # Text, not str: a value like "[red]" is data, not rich markup.
    if value is None:
        return Text("-")
    if isinstance(value, bool):
        return Text("yes" if value else "no")
    if isinstance(value, list):
        return Text(", ".join(str(v) for v in value) or "-")
    if isinstance(value, dict):
        return Text(json.dumps(value))
    return Text(str(value))


def human_bytes(n: int) -> str:
    size, unit = float(n), "B"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"


def record(cli: Cli, data: dict[str, Any]) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in data.items():
        table.add_row(Text(key), _cell(value))
    cli.out.print(table)


Column = tuple[str, Callable[[dict[str, Any]], Any]]


def col(key: str, header: str | None = None) -> Column:
    return (header or key, lambda row: row.get(key))


def rows(cli: Cli, page: dict[str, Any], columns: Sequence[Column]) -> None:
    table = Table(*(header for header, _ in columns))
    for row in page["results"]:
        table.add_row(*(_cell(get(row)) for _, get in columns))
    cli.out.print(table)
    shown, count = len(page["results"]), page["count"]
    if shown < count:
        cli.out.print(f"{shown} of {count} shown; use --limit and --offset for more")


def counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{counts.get(k, 0)} {k}" for k in COUNTERS)


def summary_table(cli: Cli, summary: dict[str, Any]) -> None:
    table = Table("kind", "count", "bytes", title="stored artifacts")
    for kind, totals in summary["by_kind"].items():
        table.add_row(kind, str(totals["count"]), human_bytes(totals["bytes"]))
    table.add_row("total", str(summary["count"]), human_bytes(summary["bytes"]), style="bold")
    cli.out.print(table)


# --- the application -------------------------------------------------------

app = typer.Typer(help="Manage lazily mirrored container repositories.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
remote_app = typer.Typer(help="Upstream registries to sync from.", no_args_is_help=True)
repository_app = typer.Typer(help="Versioned repositories, and syncing them.",
                             no_args_is_help=True)
distribution_app = typer.Typer(help="Where repositories are served to clients.",
                               no_args_is_help=True)
artifact_app = typer.Typer(help="What storage holds.", no_args_is_help=True)
task_app = typer.Typer(help="Background operations.", no_args_is_help=True)
app.add_typer(remote_app, name="remote")
app.add_typer(repository_app, name="repository")
app.add_typer(distribution_app, name="distribution")
app.add_typer(artifact_app, name="artifact")
app.add_typer(task_app, name="task")

Name = Annotated[str, typer.Argument(help="Name of the resource")]
Limit = Annotated[int, typer.Option(help="Page size (at most 1000)")]
Offset = Annotated[int, typer.Option(help="Skip this many results")]


def _version(value: bool) -> None:
    if value:
        print(f"lazyreg {lazyreg.__version__}")
        raise typer.Exit()


@app.callback()
def options(
    ctx: typer.Context,
    server: Annotated[str, typer.Option(envvar="LAZYREG_SERVER",
                                        help="URL of the lazyreg server")] = DEFAULT_SERVER,
    output: Annotated[Output, typer.Option("-o", "--output",
                                           help="table for people, json for scripts")
                      ] = Output.table,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit")] = False,
) -> None:
    ctx.obj = Cli(Client(server), output)


def cli_of(ctx: typer.Context) -> Cli:
    obj: Cli = ctx.obj
    return obj


# --- remotes ---------------------------------------------------------------

REMOTE_COLUMNS = (col("name"), col("url"), col("upstream_name", "upstream"), col("policy"),
                  col("include_tags", "include"), col("exclude_tags", "exclude"))


def _remote_fields(url: str | None, upstream_name: str | None, policy: Policy | None,
                   include_tags: list[str] | None, exclude_tags: list[str] | None,
                   username: str | None, password: str | None, password_stdin: bool,
                   tls_verify: bool | None, ca_cert: Path | None, proxy_url: str | None,
                   download_concurrency: int | None) -> dict[str, Any]:
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    cert = None
    if ca_cert is not None:
        try:
            cert = ca_cert.read_text()
        except OSError as exc:
            raise CliError(f"cannot read --ca-cert {ca_cert}: {exc.strerror}") from None
    fields = {"url": url, "upstream_name": upstream_name,
              "policy": policy.value if policy else None,
              "include_tags": include_tags or None, "exclude_tags": exclude_tags or None,
              "username": username, "password": password, "tls_verify": tls_verify,
              "ca_cert": cert, "proxy_url": proxy_url,
              "download_concurrency": download_concurrency}
    return {k: v for k, v in fields.items() if v is not None}


Url = Annotated[str | None, typer.Option(help="Upstream registry URL, http(s)://host[:port]")]
UpstreamName = Annotated[str | None, typer.Option(help="Repository name on the upstream")]
PolicyOpt = Annotated[Policy | None, typer.Option(help="When blobs are downloaded")]
Globs = Annotated[list[str] | None, typer.Option(help="Tag glob; repeat for several")]
OptText = Annotated[str | None, typer.Option()]
PasswordStdin = Annotated[bool, typer.Option(help="Read the password from stdin")]
TlsVerify = Annotated[bool | None, typer.Option("--tls-verify/--no-tls-verify",
                                                help="Verify the upstream's certificate")]
CaCert = Annotated[Path | None, typer.Option(help="PEM file of CA certificates to trust")]
Concurrency = Annotated[int | None, typer.Option(help="Parallel downloads (1-64)")]


@remote_app.command("create")
def remote_create(ctx: typer.Context, name: Name,
                  url: Annotated[str, typer.Option(help="Upstream registry URL,"
                                                   " http(s)://host[:port]")],
                  upstream_name: Annotated[str, typer.Option(
                      help="Repository name on the upstream, e.g. library/alpine")],
                  policy: PolicyOpt = None,
                  include_tags: Globs = None, exclude_tags: Globs = None,
                  username: OptText = None, password: OptText = None,
                  password_stdin: PasswordStdin = False, tls_verify: TlsVerify = None,
                  ca_cert: CaCert = None, proxy_url: OptText = None,
                  download_concurrency: Concurrency = None) -> None:
    """Create a remote: an upstream registry and one of its repositories."""
    cli = cli_of(ctx)
    body = {"name": name, **_remote_fields(
        url, upstream_name, policy, include_tags, exclude_tags, username, password,
        password_stdin, tls_verify, ca_cert, proxy_url, download_concurrency)}
    cli.emit(cli.client.post("remotes/", body), lambda d: record(cli, d))


@remote_app.command("update")
def remote_update(ctx: typer.Context, name: Name, url: Url = None,
                  upstream_name: UpstreamName = None, policy: PolicyOpt = None,
                  include_tags: Globs = None, exclude_tags: Globs = None,
                  username: OptText = None, password: OptText = None,
                  password_stdin: PasswordStdin = False, tls_verify: TlsVerify = None,
                  ca_cert: CaCert = None, proxy_url: OptText = None,
                  download_concurrency: Concurrency = None) -> None:
    """Change the given fields of a remote."""
    cli = cli_of(ctx)
    body = _remote_fields(url, upstream_name, policy, include_tags, exclude_tags, username,
                          password, password_stdin, tls_verify, ca_cert, proxy_url,
                          download_concurrency)
    if not body:
        raise CliError("nothing to update: give at least one option")
    cli.emit(cli.client.patch(f"remotes/{_quote(name)}/", body), lambda d: record(cli, d))


@remote_app.command("list")
def remote_list(ctx: typer.Context, limit: Limit = 100, offset: Offset = 0) -> None:
    """List remotes."""
    cli = cli_of(ctx)
    page = cli.client.get("remotes/", limit=limit, offset=offset)
    cli.emit(page, lambda p: rows(cli, p, REMOTE_COLUMNS))


@remote_app.command("show")
def remote_show(ctx: typer.Context, name: Name) -> None:
    """Show a remote (its password never is)."""
    cli = cli_of(ctx)
    cli.emit(cli.client.get(f"remotes/{_quote(name)}/"), lambda d: record(cli, d))


@remote_app.command("delete")
def remote_delete(ctx: typer.Context, name: Name) -> None:
    """Delete a remote."""
    deleted(cli_of(ctx), f"remotes/{_quote(name)}/", f"deleted remote {name}")


def deleted(cli: Cli, path: str, message: str) -> None:
    cli.client.delete(path)
    cli.emit({"deleted": path}, lambda _: cli.out.print(message))


# --- repositories ----------------------------------------------------------

REPOSITORY_COLUMNS = (col("name"), col("latest_version", "latest version"),
                      col("description"))
VERSION_COLUMNS: tuple[Column, ...] = (
    col("number", "version"), col("created"),
    ("content", lambda v: counts_text(v["content_counts"])),
    ("added", lambda v: counts_text(v["added"])),
    ("removed", lambda v: counts_text(v["removed"])))


@repository_app.command("create")
def repository_create(ctx: typer.Context, name: Name,
                      description: Annotated[str, typer.Option()] = "") -> None:
    """Create an empty repository (version 0)."""
    cli = cli_of(ctx)
    body = {"name": name, "description": description}
    cli.emit(cli.client.post("repositories/", body), lambda d: record(cli, d))


@repository_app.command("update")
def repository_update(ctx: typer.Context, name: Name,
                      description: Annotated[str, typer.Option()]) -> None:
    """Change the description of a repository."""
    cli = cli_of(ctx)
    answer = cli.client.patch(f"repositories/{_quote(name)}/", {"description": description})
    cli.emit(answer, lambda d: record(cli, d))


@repository_app.command("list")
def repository_list(ctx: typer.Context, limit: Limit = 100, offset: Offset = 0) -> None:
    """List repositories."""
    cli = cli_of(ctx)
    page = cli.client.get("repositories/", limit=limit, offset=offset)
    cli.emit(page, lambda p: rows(cli, p, REPOSITORY_COLUMNS))


@repository_app.command("show")
def repository_show(ctx: typer.Context, name: Name) -> None:
    """Show a repository."""
    cli = cli_of(ctx)
    cli.emit(cli.client.get(f"repositories/{_quote(name)}/"), lambda d: record(cli, d))


@repository_app.command("delete")
def repository_delete(ctx: typer.Context, name: Name) -> None:
    """Delete a repository, its versions and the distributions serving it."""
    deleted(cli_of(ctx), f"repositories/{_quote(name)}/", f"deleted repository {name}")


@repository_app.command("versions")
def repository_versions(ctx: typer.Context, name: Name, limit: Limit = 100,
                        offset: Offset = 0) -> None:
    """List the versions of a repository, newest first."""
    cli = cli_of(ctx)
    page = cli.client.get(f"repositories/{_quote(name)}/versions/", limit=limit, offset=offset)
    cli.emit(page, lambda p: rows(cli, p, VERSION_COLUMNS))


@repository_app.command("sync")
def repository_sync(
    ctx: typer.Context, name: Name,
    remote: Annotated[str, typer.Option(help="The remote to sync from")],
    mirror: Annotated[bool, typer.Option(help="Remove what the upstream no longer has")
                      ] = False,
    wait: Annotated[bool, typer.Option(help="Follow the task until it ends")] = True,
) -> None:
    """Sync a repository from a remote, showing progress until it ends."""
    cli = cli_of(ctx)
    task = cli.client.post(f"repositories/{_quote(name)}/sync/",
                           {"remote": remote, "mirror": mirror})
    if not wait:
        cli.emit(task, lambda t: cli.out.print(f"started task {t['id']} ({t['state']})"))
        return
    try:
        task = follow(cli, task)
    except KeyboardInterrupt:
        raise CliError(f"stopped waiting; the sync goes on: lazyreg task show {task['id']}"
                       ) from None
    if cli.output is Output.json:
        cli.emit(task, lambda _: None)
    elif task["state"] == "completed":
        report_version(cli, task)
    if task["state"] != "completed":
        raise CliError(f"sync {task['state']}: {task.get('error') or 'no error recorded'}")


def follow(cli: Cli, task: dict[str, Any]) -> dict[str, Any]:
    """Poll a task until it ends; people see a bar per counter, scripts nothing."""
    if cli.output is Output.json:
        while task["state"] not in FINAL_STATES:
            time.sleep(POLL_INTERVAL)
            task = cli.client.get(f"tasks/{task['id']}/")
        return task
    columns = (TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        bars: dict[str, Any] = {}
        message = ""
        while True:
            snapshot = task.get("progress") or {}
            for key, counter in snapshot.items():
                if not isinstance(counter, dict):
                    continue
                if key not in bars:
                    bars[key] = progress.add_task(key, total=None)
                progress.update(bars[key], completed=counter.get("done", 0),
                                total=counter.get("total") or None)
            if task["state"] in FINAL_STATES:
                return task  # its last message is what the caller reports
            if snapshot.get("message") and snapshot["message"] != message:
                message = snapshot["message"]
                progress.console.print(message, style="dim", markup=False)
            time.sleep(POLL_INTERVAL)
            task = cli.client.get(f"tasks/{task['id']}/")


def report_version(cli: Cli, task: dict[str, Any]) -> None:
    versions = [r for r in task.get("created_resources") or [] if "/versions/" in r]
    if not versions:
        cli.out.print("no changes")
        return
    version = cli.client.get(versions[-1])
    changes = f"added {counts_text(version['added'])}"
    if any(version["removed"].values()):
        changes += f"; removed {counts_text(version['removed'])}"
    cli.out.print(f"created version {version['number']}:"
                  f" {counts_text(version['content_counts'])} ({changes})", markup=False)


# --- distributions ---------------------------------------------------------

DISTRIBUTION_COLUMNS = (col("name"), col("base_path", "base path"), col("repository"),
                        ("version", lambda d: d["repository_version"]
                         if d["repository_version"] is not None else "latest"),
                        col("private"))
BasePath = Annotated[str | None, typer.Option(help="The name clients pull")]
RepositoryOpt = Annotated[str | None, typer.Option(help="The repository to serve")]
VersionOpt = Annotated[int | None, typer.Option("--version",
                                                help="Pin this version (default: latest)")]
Private = Annotated[bool | None, typer.Option("--private/--public")]


@distribution_app.command("create")
def distribution_create(ctx: typer.Context, name: Name, base_path: BasePath = None,
                        repository: RepositoryOpt = None, version: VersionOpt = None,
                        private: Private = None) -> None:
    """Serve a repository at a base path."""
    cli = cli_of(ctx)
    fields = {"base_path": base_path, "repository": repository,
              "repository_version": version, "private": private}
    body = {"name": name, **{k: v for k, v in fields.items() if v is not None}}
    cli.emit(cli.client.post("distributions/", body), lambda d: record(cli, d))


@distribution_app.command("update")
def distribution_update(
    ctx: typer.Context, name: Name, base_path: BasePath = None,
    repository: RepositoryOpt = None, version: VersionOpt = None,
    latest: Annotated[bool, typer.Option(help="Unpin: serve the latest version")] = False,
    private: Private = None,
) -> None:
    """Change the given fields of a distribution."""
    cli = cli_of(ctx)
    if latest and version is not None:
        raise CliError("--latest and --version exclude each other")
    fields = {"base_path": base_path, "repository": repository,
              "repository_version": version, "private": private}
    body: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
    if latest:
        body["repository_version"] = None
    if not body:
        raise CliError("nothing to update: give at least one option")
    answer = cli.client.patch(f"distributions/{_quote(name)}/", body)
    cli.emit(answer, lambda d: record(cli, d))


@distribution_app.command("list")
def distribution_list(ctx: typer.Context, limit: Limit = 100, offset: Offset = 0) -> None:
    """List distributions."""
    cli = cli_of(ctx)
    page = cli.client.get("distributions/", limit=limit, offset=offset)
    cli.emit(page, lambda p: rows(cli, p, DISTRIBUTION_COLUMNS))


@distribution_app.command("show")
def distribution_show(ctx: typer.Context, name: Name) -> None:
    """Show a distribution."""
    cli = cli_of(ctx)
    cli.emit(cli.client.get(f"distributions/{_quote(name)}/"), lambda d: record(cli, d))


@distribution_app.command("delete")
def distribution_delete(ctx: typer.Context, name: Name) -> None:
    """Delete a distribution (the repository stays)."""
    deleted(cli_of(ctx), f"distributions/{_quote(name)}/", f"deleted distribution {name}")


# --- artifacts, tasks, status ----------------------------------------------

ARTIFACT_COLUMNS = (col("digest"), col("kind"), ("size", lambda a: human_bytes(a["size"])),
                    col("created"))
TASK_COLUMNS = (col("id"), col("kind"), col("state"), col("created"), col("finished"),
                ("repository", lambda t: (t.get("params") or {}).get("repository")))


@artifact_app.command("list")
def artifact_list(ctx: typer.Context,
                  kind: Annotated[str | None, typer.Option(help="manifest, config or layer")
                                  ] = None,
                  limit: Limit = 100, offset: Offset = 0) -> None:
    """Show what storage holds: totals by kind, then the artifacts."""
    cli = cli_of(ctx)
    page = cli.client.get("artifacts/", kind=kind, limit=limit, offset=offset)

    def render(p: dict[str, Any]) -> None:
        summary_table(cli, p["summary"])
        rows(cli, p, ARTIFACT_COLUMNS)
    cli.emit(page, render)


@task_app.command("list")
def task_list(ctx: typer.Context,
              state: Annotated[str | None, typer.Option(help="waiting, running, completed,"
                                                        " failed or canceled")] = None,
              limit: Limit = 20, offset: Offset = 0) -> None:
    """List tasks, newest first."""
    cli = cli_of(ctx)
    page = cli.client.get("tasks/", state=state, limit=limit, offset=offset)
    cli.emit(page, lambda p: rows(cli, p, TASK_COLUMNS))


@task_app.command("show")
def task_show(ctx: typer.Context, task_id: Annotated[str, typer.Argument(help="Task id")]
              ) -> None:
    """Show a task: state, progress, error, what it created."""
    cli = cli_of(ctx)
    cli.emit(cli.client.get(f"tasks/{_quote(task_id)}/"), lambda d: record(cli, d))


@app.command()
def status(ctx: typer.Context) -> None:
    """Show the server's version, backends and what storage holds."""
    cli = cli_of(ctx)

    def render(s: dict[str, Any]) -> None:
        record(cli, {"server": cli.client.server, "version": s["version"],
                     "database": s["database"], "storage": s["storage"]["path"],
                     **s["counts"]})
        summary_table(cli, s["artifacts"])
    cli.emit(cli.client.get("status/"), render)


@app.command()
def check(ctx: typer.Context,
          verify: Annotated[bool, typer.Option(help="Also hash every stored file")] = False
          ) -> None:
    """Compare database and storage; exit 1 if anything is wrong."""
    cli = cli_of(ctx)
    report = cli.client.get("check/", verify="true" if verify else None)

    def render(r: dict[str, Any]) -> None:
        problems = {k: v for k, v in r.items() if isinstance(v, list) and v}
        record(cli, {"ok": r["ok"], "artifacts": r["artifacts"], "files": r["files"],
                     "verified": r["verified"], **{k: len(v) for k, v in problems.items()}})
        for kind, items in problems.items():
            for item in items[:20]:
                cli.out.print(f"{kind}: {item}", markup=False)
    cli.emit(report, render)
    if not report["ok"]:
        raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [5000]")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Database and storage [./lazyreg-data]")
                        ] = None,
    database_url: Annotated[str | None, typer.Option(help="postgresql://... to scale out")
                            ] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate: serve HTTPS")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert")] = None,
) -> None:
    """Run the server: the OCI registry (/v2) and the management API (/api/v1)."""
    # Only the given flags go in, so that LAZYREG_* and the TOML config fill the rest.
    from pydantic import ValidationError

    from lazyreg.config import Settings
    from lazyreg.serve import serve as run

    flags = {"host": host, "port": port, "data_dir": data_dir, "database_url": database_url,
             "tls_cert": tls_cert, "tls_key": tls_key}
    given: dict[str, Any] = {k: v for k, v in flags.items() if v is not None}
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CliError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise CliError("--tls-cert and --tls-key go together")
    run(settings)


# --- entry point -----------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; every error becomes one line on stderr."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=list(argv) if argv is not None else None, prog_name="lazyreg",
                            standalone_mode=False)
    except CliError as exc:
        return _fail(str(exc))
    except typer.TyperException as exc:  # click's usage errors, in typer's vendored click
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # type: ignore[attr-defined]
            return 2
        return _fail(exc.format_message(), getattr(exc, "exit_code", 2))
    except typer.Abort:
        return _fail("aborted")
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as exc:  # the promise is one line, never a traceback
        return _fail(f"{type(exc).__name__}: {exc}")
    return code if isinstance(code, int) else 0


def _fail(message: str, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code or 1


if __name__ == "__main__":
    sys.exit(main())
