"""Rendering for people: sizes, cells, and pages that say when more are left."""

from __future__ import annotations

import io

from rich.console import Console

from lazyreg.cli.render import cell, col, human_bytes, rows


def test_human_bytes() -> None:
    cases = {0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB",
             1024**2 - 1: "1024.0 KiB", 5 * 1024**3: "5.0 GiB", 1024**5: "1024.0 TiB"}
    assert {n: human_bytes(n) for n in cases} == cases


def test_cells_are_text_not_markup() -> None:
    assert [cell(v).plain for v in (None, True, False, [], ["a", 1], {"k": 1}, "[red]x")] == [
        "-", "yes", "no", "-", "a, 1", '{"k": 1}', "[red]x"]


def test_a_short_page_says_how_many_are_left() -> None:
    out = Console(width=120, file=io.StringIO())
    rows(out, {"count": 3, "results": [{"name": "a"}]}, [col("name")])
    text = out.file.getvalue()  # type: ignore[attr-defined]
    assert text.splitlines()[-1] == "1 of 3 shown; use --limit and --offset for more"
    out = Console(width=120, file=io.StringIO())
    rows(out, {"count": 1, "results": [{"name": "a"}]}, [col("name")])
    assert "shown" not in out.file.getvalue()  # type: ignore[attr-defined]
