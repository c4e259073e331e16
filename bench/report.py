"""Results: the data model, `RESULTS.md` (a table per scenario) and the PNG plot."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

LAZYREG = "lazyreg"
DASH = "\u2013"  # en dash, for ranges


@dataclass(frozen=True)
class Goal:
    """`ratio >= 1.0`, `ratio <= 1.15` (of the section's first ratio, or of `of`), or
    `value < 150` (lazyreg's median)."""

    on: Literal["ratio", "value"]
    op: Literal[">=", "<=", "<"]
    bound: float
    of: tuple[str, str] | None = None  # (numerator, denominator) columns of a ratio goal

    def text(self, unit: str) -> str:
        op = {">=": "≥", "<=": "≤", "<": "<"}[self.op]
        if self.on == "value":
            return f"{op} {self.bound:g} {unit}"
        return f"{op} {self.bound:g}" + (f" ({_ratio_label(*self.of)})" if self.of else "")

    def met(self, x: float) -> bool:
        return {">=": x >= self.bound, "<=": x <= self.bound, "<": x < self.bound}[self.op]


@dataclass
class Row:
    case: str
    unit: str
    values: dict[str, list[float]]  # column -> samples; a missing column renders as n/a
    better: Literal["higher", "lower"]
    goal: Goal | tuple[Goal, ...] | None = None
    plot: bool = True  # shown in results.png (keep one unit per section)

    @property
    def goals(self) -> tuple[Goal, ...]:
        if self.goal is None:
            return ()
        return self.goal if isinstance(self.goal, tuple) else (self.goal,)

    def median(self, column: str) -> float | None:
        samples = self.values.get(column)
        return statistics.median(samples) if samples else None

    def ratio(self, num: str, den: str) -> float | None:
        a, b = self.median(num), self.median(den)
        return a / b if a is not None and b else None

    def goal_value(self, goal: Goal, ratios: Sequence[tuple[str, str]]) -> float | None:
        if goal.on == "value":
            return self.median(LAZYREG)
        of = goal.of or (ratios[0] if ratios else None)
        return self.ratio(*of) if of else None


@dataclass
class Section:
    key: str
    title: str
    columns: list[str]  # servers, lazyreg first
    ratios: list[tuple[str, str]]  # (numerator, denominator) columns; a goal is on the first
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missing: str = "n/a"  # what a cell without samples says
    seconds: float = 0.0  # how long the scenario took
    other_cores: float | None = None  # CPU other processes on the machine used meanwhile


@dataclass
class RunInfo:
    mode: str
    reps: int
    date: str
    commit: str
    cores: int | None
    versions: dict[str, str]
    load: dict[str, list[float]]
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def fmt(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def cell(samples: list[float] | None, missing: str) -> str:
    if not samples:
        return missing
    med = statistics.median(samples)
    if len(samples) == 1 or min(samples) == max(samples):
        return fmt(med)
    return f"{fmt(med)} [{fmt(min(samples))}{DASH}{fmt(max(samples))}]"


def _ratio_label(num: str, den: str) -> str:
    return f"{num} ÷ {den}"


def verdict(row: Row, goal: Goal, ratios: Sequence[tuple[str, str]]) -> str:
    """yes / no; a missed ratio goal whose two sides' ranges overlap says so (the difference
    is within the noise: e.g. the metrics scenario's goal of 0.95)."""
    value = row.goal_value(goal, ratios)
    assert value is not None
    if goal.met(value):
        return "yes"
    if goal.on == "ratio":
        num, den = goal.of or ratios[0]
        a, b = row.values[num], row.values[den]
        if min(a) <= max(b) and min(b) <= max(a):
            return "**no** (ranges overlap)"
    return "**no**"


def section_markdown(section: Section, reps: int) -> list[str]:
    out = [f"## {section.title}", ""]
    header = ["case", "unit", *section.columns,
              *(_ratio_label(n, d) for n, d in section.ratios), "goal", "met"]
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "|".join(["---", "---"] + ["--:"] * (len(header) - 4) + ["---", "---"])
               + "|")
    for row in section.rows:
        cells = [row.case, row.unit + (" ↑" if row.better == "higher" else " ↓")]
        cells += [cell(row.values.get(c), section.missing) for c in section.columns]
        for num, den in section.ratios:
            r = row.ratio(num, den)
            cells.append("" if r is None else f"{r:.2f}")
        goals = [g for g in row.goals if row.goal_value(g, section.ratios) is not None]
        cells += ["; ".join(g.text(row.unit) for g in goals),
                  "; ".join(verdict(row, g, section.ratios) for g in goals)]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    line = f"↑ higher is better, ↓ lower is better. This scenario took {section.seconds:.0f} s"
    if section.other_cores is not None:
        line += (f"; meanwhile processes outside this benchmark used {section.other_cores:.2f}"
                 " cores on average")
    out.append(line + ".")
    out += [""] + [f"- {n}" for n in section.notes] + [""] if section.notes else [""]
    return out


def summary_markdown(sections: list[Section]) -> list[str]:
    out = ["## Goals at a glance", "", "| scenario | case | measured | goal | met |",
           "|---|---|--:|---|---|"]
    for s in sections:
        for row in s.rows:
            for goal in row.goals:
                value = row.goal_value(goal, s.ratios)
                if value is None:
                    continue
                what = (_ratio_label(*(goal.of or s.ratios[0])) if goal.on == "ratio"
                        else f"{LAZYREG}, {row.unit}")
                op = {">=": "≥", "<=": "≤", "<": "<"}[goal.op]
                out.append(f"| {s.title} | {row.case} | {fmt(value)} ({what}) |"
                           f" {op} {goal.bound:g} | {verdict(row, goal, s.ratios)} |")
    return [*out, ""]


ANALYSIS = Path(__file__).with_name("ANALYSIS.md")


def write_markdown(path: Path, info: RunInfo, sections: list[Section], plot: Path | None,
                   errors: list[str]) -> None:
    versions = ", ".join(f"{k} {v}" for k, v in info.versions.items())
    load = ", ".join(f"{k} {' / '.join(f'{x:.2f}' for x in v)}" for k, v in info.load.items())
    lines = [
        "# lazyreg benchmarks against the CNCF distribution registry" +
        (" (quick mode)" if info.mode == "quick" else ""),
        "",
        f"- date: {info.date}",
        f"- git commit: {info.commit}",
        f"- cores: {info.cores} (`os.cpu_count()`), everything on loopback on this one machine",
        f"- mode: {info.mode}, {info.reps} repetition(s) per measurement; whole run"
        f" {info.seconds / 60:.1f} min",
        f"- software: {versions}",
        f"- load average (1/5/15 min): {load}",
        "",
        f"Each cell is the median over the repetitions, with [min{DASH}max]."
        " Ratios are of medians.",
        "`distribution` is the CNCF registry serving from its own storage (the upstream);",
        "`distribution proxy` is a second distribution in pull-through-cache mode in front of it",
        "(the peer of a lazy mirror); `direct` is the client pulling from the upstream itself.",
        "Repetitions of the servers in one case are interleaved (order rotated) so that",
        "background load hits them alike.",
        "",
    ]
    if plot is not None:
        lines += [f"![throughput per scenario]({plot.name})", ""]
    if errors:
        lines += ["## Errors", ""] + [f"- {e}" for e in errors] + [""]
    lines += summary_markdown(sections)
    if info.mode == "full" and ANALYSIS.exists():  # hand-written: why a goal is not met
        lines += [*ANALYSIS.read_text().rstrip().splitlines(), ""]
    for section in sections:
        lines += section_markdown(section, info.reps)
    if info.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in info.notes] + [""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip() + "\n")


def write_json(path: Path, info: RunInfo, sections: list[Section]) -> None:
    data: dict[str, Any] = {"run": asdict(info), "sections": [asdict(s) for s in sections]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


def write_plot(path: Path, info: RunInfo, sections: list[Section]) -> None:
    """One panel per scenario: grouped bars (median, min-max whiskers) per server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [s for s in sections if any(r.plot for r in s.rows)]
    if not panels:
        return
    ncols = 2 if len(panels) > 1 else 1
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(7.5 * ncols, 4.2 * nrows), squeeze=False)
    colors = {LAZYREG: "#2b7bba", "distribution": "#e08a2c", "distribution proxy": "#8c5fb8",
              "direct": "#7f7f7f", "distribution proxy (cached)": "#b89adb",
              "lazyreg, request metrics off": "#9ec5e8"}
    for ax, section in zip(axes.flat, panels, strict=False):
        rows = [r for r in section.rows if r.plot]
        units = sorted({r.unit for r in rows})
        columns = [c for c in section.columns if any(r.values.get(c) for r in rows)]
        width = 0.8 / len(columns)
        for i, column in enumerate(columns):
            xs, meds, lo, hi = [], [], [], []
            for j, row in enumerate(rows):
                samples = row.values.get(column)
                if not samples:
                    continue
                med = statistics.median(samples)
                xs.append(j + (i - (len(columns) - 1) / 2) * width)
                meds.append(med)
                lo.append(med - min(samples))
                hi.append(max(samples) - med)
            if xs:
                ax.bar(xs, meds, width, yerr=[lo, hi], capsize=2, label=column,
                       color=colors.get(column))
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([r.case for r in rows], rotation=20, ha="right", fontsize=7)
        better = sorted({r.better for r in rows})
        ax.set_ylabel(" / ".join(units) + f" ({' / '.join(better)} is better)", fontsize=8)
        ax.set_title(section.title, fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"lazyreg vs CNCF distribution — {info.mode} mode, {info.reps} rep(s),"
                 f" {info.cores} cores, {info.date}, {info.commit}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
