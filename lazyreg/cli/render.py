"""How answers are shown: JSON for scripts, or tables and records for people.

Values reach the terminal as `Text`, never as rich markup, so a description
like "[red]" is shown as typed. Piped output is not wrapped at 80 columns, so
a digest stays whole on its line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

COUNTERS = ("tags", "manifests", "blobs")
PIPED_WIDTH = 240


class Output(StrEnum):
    table = "table"
    json = "json"


Row = dict[str, Any]
Column = tuple[str, Callable[[Row], Any]]


def console() -> Console:
    """Standard output for people."""
    out = Console(soft_wrap=False)
    return out if out.is_terminal else Console(width=PIPED_WIDTH)


def emit(output: Output, data: Any, render: Callable[[Any], None]) -> None:
    """Print `data` as JSON, or hand it to `render` for people."""
    if output is Output.json:
        print(json.dumps(data, indent=2))
    else:
        render(data)


def cell(value: Any) -> Text:
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


def counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{counts.get(k, 0)} {k}" for k in COUNTERS)


def col(key: str, header: str | None = None) -> Column:
    return (header or key, lambda row: row.get(key))


def record(out: Console, data: Row) -> None:
    """One resource: a field per line."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in data.items():
        table.add_row(Text(key), cell(value))
    out.print(table)


def rows(out: Console, page: Row, columns: Sequence[Column]) -> None:
    """A page of resources as a table, saying when more are left."""
    table = Table(*(header for header, _ in columns))
    for row in page["results"]:
        table.add_row(*(cell(get(row)) for _, get in columns))
    out.print(table)
    shown, count = len(page["results"]), page["count"]
    if shown < count:
        out.print(f"{shown} of {count} shown; use --limit and --offset for more")


def summary_table(out: Console, summary: Row) -> None:
    """What storage holds, by kind of artifact."""
    table = Table("kind", "count", "bytes", title="stored artifacts")
    for kind, totals in summary["by_kind"].items():
        table.add_row(Text(kind), str(totals["count"]), human_bytes(totals["bytes"]))
    table.add_row("total", str(summary["count"]), human_bytes(summary["bytes"]), style="bold")
    out.print(table)


def cache_table(out: Console, cache: Row) -> None:
    """Stored bytes against the bound: what may be evicted and what is always kept."""
    bound = cache["max_bytes"]
    table = Table("stored", "count", "bytes", "bound", title="cache")
    table.add_row("evictable", str(cache["evictable_count"]),
                  human_bytes(cache["evictable_bytes"]),
                  human_bytes(bound) if bound is not None else "none")
    table.add_row("kept", str(cache["kept_count"]), human_bytes(cache["kept_bytes"]), "-")
    out.print(table)
    if cache["evicted_blobs"]:
        out.print(f"evicted since start: {cache['evicted_blobs']} blobs,"
                  f" {human_bytes(cache['evicted_bytes'])}", markup=False)
