"""Line charts as inline SVG, drawn on the server: no JavaScript library, nothing fetched, the same in the live
viewer and in an exported page. One chart = one y series (or a few sharing an axis) over steps.

Values that are None or not finite are gaps (a step without the metric); labels are escaped by the caller's
template (the strings here are numbers and metric names of our own).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT, PAD_L, PAD_R, PAD_T, PAD_B = 360, 170, 46, 10, 22, 24
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


@dataclass(frozen=True)
class Series:
    name: str
    points: list[tuple[float, float | None]]  # (step, value)


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000 or abs(v) < 0.01:
        return f"{v:.2g}"
    return f"{v:.3g}"


def line_chart(title: str, series: list[Series]) -> str:
    """An SVG line chart (markup; every text in it escaped here)."""
    pts = [(x, y) for s in series for x, y in s.points if _finite(y)]
    head = (f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
            f'aria-label="{escape(title)}"><text x="{PAD_L}" y="14" class="chart-title">{escape(title)}</text>')
    if not pts:
        return head + f'<text x="{PAD_L}" y="{HEIGHT // 2}" class="chart-empty">no data</text></svg>'
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if y0 == y1:
        y0, y1 = y0 - (abs(y0) * 0.1 or 1), y1 + (abs(y1) * 0.1 or 1)
    sx = (WIDTH - PAD_L - PAD_R) / ((x1 - x0) or 1)
    sy = (HEIGHT - PAD_T - PAD_B) / (y1 - y0)

    def px(x, y):
        return PAD_L + (x - x0) * sx, HEIGHT - PAD_B - (y - y0) * sy

    parts = [head,
             f'<line x1="{PAD_L}" y1="{HEIGHT - PAD_B}" x2="{WIDTH - PAD_R}" y2="{HEIGHT - PAD_B}" class="axis"/>',
             f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{HEIGHT - PAD_B}" class="axis"/>',
             f'<text x="{PAD_L - 4}" y="{PAD_T + 4}" class="tick" text-anchor="end">{_fmt(y1)}</text>',
             f'<text x="{PAD_L - 4}" y="{HEIGHT - PAD_B}" class="tick" text-anchor="end">{_fmt(y0)}</text>',
             f'<text x="{PAD_L}" y="{HEIGHT - 8}" class="tick">{_fmt(x0)}</text>',
             f'<text x="{WIDTH - PAD_R}" y="{HEIGHT - 8}" class="tick" text-anchor="end">step {_fmt(x1)}</text>']
    for i, s in enumerate(series):
        color = COLORS[i % len(COLORS)]
        runs, cur = [], []
        for x, y in s.points:
            if _finite(y):
                cur.append(px(x, y))
            elif cur:
                runs.append(cur)
                cur = []
        runs.append(cur)
        for run in runs:
            if len(run) == 1:
                parts.append(f'<circle cx="{run[0][0]:.1f}" cy="{run[0][1]:.1f}" r="2.5" fill="{color}"/>')
            elif run:
                d = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
                parts.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        if len(series) > 1:
            parts.append(f'<text x="{WIDTH - PAD_R - 4}" y="{PAD_T + 12 + 12 * i}" class="legend" fill="{color}" '
                         f'text-anchor="end">{escape(s.name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def charts(title_keys: list[tuple[str, list[str]]], rows: list[dict], x: str = "step") -> list[str]:
    """One chart per (title, [keys]) over `rows` (dicts with `x` and the keys)."""
    return [line_chart(title, [Series(k, [(r[x], r.get(k)) for r in rows if r.get(x) is not None]) for k in keys])
            for title, keys in title_keys]
