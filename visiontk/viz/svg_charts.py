"""Small line and bar charts as inline SVG markup, written with the standard library.

The run report redraws its curves after every epoch; a matplotlib figure cost
0.1-0.3 s each (three or four per page), these cost well under a millisecond
and stay sharp at any zoom. Every name put into the markup is escaped.
"""
from __future__ import annotations

import math
from html import escape

LINE_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
                "#17becf"]


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.3g}" if v and (abs(v) < 1e-3 or abs(v) >= 1e4) else f"{v:.4g}"


def line_chart(series: dict[str, list[tuple[float, float]]], title: str, xlabel: str = "epoch",
               ylim: tuple[float, float] | None = None, width: int = 320, height: int = 210) -> str:
    """One or more lines (name -> [(x, y)]), axes with ticks, a legend when several."""
    pts = [(x, y) for s in series.values() for x, y in s if math.isfinite(x) and math.isfinite(y)]
    left, right, top, bottom = 52, 10, 24, 34
    w, h = width - left - right, height - top - bottom
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" class="chart" role="img">',
           f"<title>{escape(title)}</title>",
           f'<text x="{width / 2}" y="15" text-anchor="middle" font-size="12">{escape(title)}</text>']
    if not pts:
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" font-size="11">no values</text></svg>')
        return "".join(out)
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = ylim if ylim else (min(p[1] for p in pts), max(p[1] for p in pts))
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y0, y1 = y0 - (abs(y0) * 0.1 or 1), y1 + (abs(y1) * 0.1 or 1)

    def sx(x):
        return left + (x - x0) / (x1 - x0) * w

    def sy(y):
        return top + h - (y - y0) / (y1 - y0) * h

    out.append(f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#999"/>')
    for t in _ticks(y0, y1):
        out.append(f'<line x1="{left}" x2="{left + w}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#e4e4e4"/>'
                   f'<text x="{left - 4}" y="{sy(t) + 4:.1f}" text-anchor="end" font-size="10">{_fmt(t)}</text>')
    for t in _ticks(x0, x1):
        out.append(f'<text x="{sx(t):.1f}" y="{top + h + 14}" text-anchor="middle" font-size="10">{_fmt(t)}</text>')
    out.append(f'<text x="{left + w / 2}" y="{height - 4}" text-anchor="middle" font-size="10">{escape(xlabel)}</text>')
    for k, (name, s) in enumerate(series.items()):
        colour = LINE_COLOURS[k % len(LINE_COLOURS)]
        good = [(x, y) for x, y in s if math.isfinite(x) and math.isfinite(y)]
        coords = " ".join(f"{sx(x):.1f},{sy(min(max(y, y0), y1)):.1f}" for x, y in good)
        out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out += [f'<circle cx="{sx(x):.1f}" cy="{sy(min(max(y, y0), y1)):.1f}" r="2.5" fill="{colour}"/>'
                for x, y in good if len(good) <= 60]
        if len(series) > 1:
            out.append(f'<text x="{left + 6}" y="{top + 12 + 12 * k}" font-size="10" fill="{colour}">'
                       f"{escape(name)}</text>")
    out.append("</svg>")
    return "".join(out)


def bar_chart(values: dict[str, float | None], title: str, xmax: float = 1.0, width: int = 420) -> str:
    """A horizontal bar per name (e.g. AP or IoU per class); a missing value is an empty row marked '-'."""
    label_w, row = 130, 18
    height = 30 + row * len(values)
    w = width - label_w - 50
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" class="chart" role="img">',
           f"<title>{escape(title)}</title>",
           f'<text x="{width / 2}" y="15" text-anchor="middle" font-size="12">{escape(title)}</text>']
    for i, (name, v) in enumerate(values.items()):
        y = 24 + i * row
        shown = name if len(name) <= 20 else name[:19] + "\u2026"
        out.append(f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end" font-size="10">{escape(shown)}</text>')
        if v is None or not math.isfinite(v):
            out.append(f'<text x="{label_w + 4}" y="{y + 12}" font-size="10">-</text>')
            continue
        bw = max(0.0, min(v / xmax, 1.0)) * w
        out.append(f'<rect x="{label_w}" y="{y + 2}" width="{bw:.1f}" height="{row - 5}" fill="#4477aa"/>'
                   f'<text x="{label_w + bw + 4:.1f}" y="{y + 12}" font-size="10">{v:.3f}</text>')
    out.append("</svg>")
    return "".join(out)
