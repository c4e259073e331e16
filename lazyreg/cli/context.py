"""What every command is handed: the server's client and the chosen output.

The global options (`--server`, `-o`) build one `Cli` per run; commands find
it on typer's context with `cli_of`. The show, list and delete actions are the
same for every resource, so they live here once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import typer
from rich.console import Console

from lazyreg.cli import render
from lazyreg.cli.client import Client
from lazyreg.cli.render import Column, Output


@dataclass
class Cli:
    client: Client
    output: Output

    @property
    def out(self) -> Console:
        return render.console()

    def emit(self, data: Any, show: Callable[[Any], None]) -> None:
        render.emit(self.output, data, show)

    def emit_record(self, data: Any) -> None:
        self.emit(data, lambda d: render.record(self.out, d))

    def show(self, path: str) -> None:
        self.emit_record(self.client.get(path))

    def page(self, path: str, columns: Sequence[Column], **query: Any) -> None:
        self.emit(self.client.get(path, **query), lambda p: render.rows(self.out, p, columns))

    def delete(self, path: str, message: str) -> None:
        self.client.delete(path)
        self.emit({"deleted": path}, lambda _: self.out.print(message))


def cli_of(ctx: typer.Context) -> Cli:
    obj: Cli = ctx.obj
    return obj
