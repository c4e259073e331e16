"""Small inline SVG pictures drawn on the server: stacked bars and per-minute columns.

Pure functions from numbers to markup; every text that goes in is escaped.
Sizes are fixed, so a picture costs the same whatever the figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape


@dataclass(frozen=True)
class Part:
    value: float
    color: str
    title: str


def bar(parts: Sequence[Part], total: float, *, width: int = 320, height: int = 14,
        label: str = "") -> str:
    """A horizontal bar: `parts` side by side, scaled so that `total` fills the width."""
    scale = width / total if total > 0 else 0.0
    x = 0.0
    rects = [f'<rect width="{width}" height="{height}" fill="#eef0f3"/>']
    for part in parts:
        w = min(part.value * scale, width - x)
        if w <= 0:
            continue
        rects.append(f'<rect x="{x:.1f}" width="{w:.1f}" height="{height}" fill="{part.color}">'
                     f"<title>{escape(part.title)}</title></rect>")
        x += w
    return (f'<svg class="bar" width="{width}" height="{height}" role="img"'
            f' aria-label="{escape(label)}" viewBox="0 0 {width} {height}">'
            + "".join(rects) + "</svg>")


def columns(series: Sequence[Sequence[Part]], *, width: int = 240, height: int = 32,
            label: str = "") -> str:
    """One stacked column per entry of `series` (e.g. per minute), scaled to the tallest."""
    tallest = max((sum(p.value for p in stack) for stack in series), default=0.0)
    n = max(len(series), 1)
    step = width / n
    scale = height / tallest if tallest > 0 else 0.0
    rects = [f'<rect width="{width}" height="{height}" fill="#f6f7f9"/>']
    for i, stack in enumerate(series):
        y = float(height)
        for part in stack:
            h = part.value * scale
            if h <= 0:
                continue
            y -= h
            rects.append(f'<rect x="{i * step:.1f}" y="{y:.1f}" width="{max(step - 0.5, 0.5):.1f}"'
                         f' height="{h:.1f}" fill="{part.color}">'
                         f"<title>{escape(part.title)}</title></rect>")
    return (f'<svg class="columns" width="{width}" height="{height}" role="img"'
            f' aria-label="{escape(label)}" viewBox="0 0 {width} {height}">'
            + "".join(rects) + "</svg>")
