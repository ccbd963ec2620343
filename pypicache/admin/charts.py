"""Small line charts drawn as SVG on the server: the dashboard needs no JavaScript."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 560, 200
LEFT, RIGHT, TOP, BOTTOM = 52, 14, 30, 26  # room for the axis labels and the legend
GRID_LINES = 4


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[float | None]  # one per time; None leaves a gap
    color: str


def line_chart(
    title: str,
    times: Sequence[datetime],
    series: Sequence[Series],
    *,
    format_value: Callable[[float], str] = lambda v: f"{v:,.0f}",
) -> Markup:
    """An SVG line chart with a y axis from 0, time labels and a legend."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    known = [v for s in series for v in s.values if v is not None]
    step = grid_step(max(known, default=0.0))
    top = step * GRID_LINES
    for line in range(GRID_LINES + 1):
        value = step * line
        y = TOP + plot_h - plot_h * line / GRID_LINES
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(format_value(value))}</text>"
        )
    x = 0
    for s in series:  # the legend, top left
        color = escape(s.color)
        parts.append(
            f'<rect x="{LEFT + x}" y="8" width="10" height="10" rx="2" fill="{color}"/>'
            f'<text class="legend" x="{LEFT + x + 14}" y="17">{escape(s.label)}</text>'
        )
        x += 28 + 7 * len(s.label)
    if len(times) < 2 or not known:
        parts.append(
            f'<text class="empty" x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" '
            'text-anchor="middle">Collecting data…</text></svg>'
        )
        return Markup("".join(parts))  # noqa: S704 - every text in it is escaped above

    start, span = times[0], max((times[-1] - times[0]).total_seconds(), 1e-9)

    def point(at: datetime, value: float) -> str:
        px = LEFT + plot_w * (at - start).total_seconds() / span
        py = TOP + plot_h - plot_h * value / top
        return f"{px:.1f},{py:.1f}"

    shown = None
    for tick in range(5):
        at = start + (times[-1] - start) * tick / 4
        anchor = ("start", "middle", "middle", "middle", "end")[tick]
        label = f"{at:%H:%M:%S}" if span < 300 else f"{at:%H:%M}"
        if label == shown:
            continue  # a short span: no label twice
        shown = label
        parts.append(
            f'<text class="axis" x="{LEFT + plot_w * tick / 4:.1f}" y="{HEIGHT - 8}" '
            f'text-anchor="{anchor}">{label}</text>'
        )
    for index, s in enumerate(series):
        color = escape(s.color)
        for run in _runs(times, s.values):
            points = " ".join(point(at, value) for at, value in run)
            if index == 0 and len(run) > 1:  # the first series is filled below its line
                base = f"{point(run[-1][0], 0)} {point(run[0][0], 0)}"
                parts.append(f'<polygon points="{points} {base}" fill="{color}" opacity="0.12"/>')
            parts.append(
                f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2" '
                'stroke-linejoin="round" stroke-linecap="round"/>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text in it is escaped above


def grid_step(highest: float) -> float:
    """1, 2 or 5 times a power of ten (at least 1): round labels, and the top line ≥ highest."""
    raw = max(highest / GRID_LINES, 1.0)
    power = 10 ** math.floor(math.log10(raw))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


def _runs(
    times: Sequence[datetime], values: Sequence[float | None]
) -> list[list[tuple[datetime, float]]]:
    """The unbroken stretches of a series, split where a value is missing."""
    runs: list[list[tuple[datetime, float]]] = [[]]
    for at, value in zip(times, values, strict=True):
        if value is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((at, value))
    return [run for run in runs if run]


def per_minute(times: Sequence[datetime], totals: Sequence[float]) -> list[float | None]:
    """A counter's increase per minute between samples (None for the first)."""
    rates: list[float | None] = [None]
    for i in range(1, len(times)):
        seconds = (times[i] - times[i - 1]).total_seconds()
        rates.append(max(totals[i] - totals[i - 1], 0.0) * 60 / seconds if seconds > 0 else None)
    return rates
