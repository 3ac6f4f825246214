"""A self-contained HTML page from sections of tables, text and PNG figures.

Standard library only (charts are inline SVG: viz/svg_charts.py). Everything that comes from the run (class names, file
names, recipe text, numbers) is escaped with `html.escape`, so a class called
``<script>`` is shown, never run. Figures are embedded as ``data:image/png``
URIs and the style sheet is inline: the page loads nothing, so it opens offline
and can be mailed or archived as one file. It has no script at all.
"""
from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from html import escape
from typing import Union


@dataclass
class Table:
    columns: list[str]
    rows: list[list[object]]
    caption: str = ""


@dataclass
class Figure:
    png: bytes
    alt: str
    caption: str = ""


@dataclass
class Charts:
    """Inline SVG charts (viz/svg_charts.py, which escapes what it writes), side by side."""

    svgs: list[str]
    caption: str = ""


@dataclass
class Heatmap:
    """A confusion matrix as a table: counts, each cell shaded by its share of the row."""

    rows: list[str]
    columns: list[str]
    counts: list[list[int]]
    corner: str = "true \\ predicted"
    caption: str = ""


# White to dark blue (matplotlib's "Blues" ends): the shade of a share 0..1.
_LIGHT, _DARK = (247, 251, 255), (8, 48, 107)


def shade(share: float) -> tuple[int, int, int]:
    share = min(max(share, 0.0), 1.0)
    return tuple(round(a + (b - a) * share) for a, b in zip(_LIGHT, _DARK))


@dataclass
class Text:
    text: str
    pre: bool = False  # monospace, whitespace kept (the recipe)


Block = Union[Table, Figure, Charts, Heatmap, Text]


@dataclass
class PageSection:
    heading: str
    blocks: list[Block] = field(default_factory=list)
    # The element id (anchors of the table of contents); made from the heading when empty.
    anchor: str = ""


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f2f2f2; }
caption { caption-side: top; text-align: left; font-style: italic; padding: 0.2em 0; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
figure { margin: 0.6em 0; }
figcaption { font-size: 0.85em; color: #555; }
img { max-width: 100%; height: auto; }
nav a { margin-right: 0.8em; font-size: 0.9em; }
.meta { color: #555; font-size: 0.9em; }
.charts { display: flex; flex-wrap: wrap; gap: 0.5em; }
.chart { font-family: system-ui, sans-serif; }
table.heat td { min-width: 3em; height: 2em; text-align: center; }
"""


def cell_text(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _anchor(section: PageSection, index: int) -> str:
    if section.anchor:
        return section.anchor
    slug = "".join(c if c.isalnum() else "-" for c in section.heading.lower()).strip("-")
    return f"s{index}-{slug}"[:60]


def _block(block: Block) -> str:
    if isinstance(block, Table):
        head = "".join(f"<th>{escape(str(c))}</th>" for c in block.columns)
        body = "".join("<tr>" + "".join(f"<td>{escape(cell_text(v))}</td>" for v in row) + "</tr>\n" for row in block.rows)
        caption = f"<caption>{escape(block.caption)}</caption>" if block.caption else ""
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>"
    if isinstance(block, Figure):
        data = base64.b64encode(block.png).decode("ascii")
        caption = f"<figcaption>{escape(block.caption)}</figcaption>" if block.caption else ""
        return f'<figure><img src="data:image/png;base64,{data}" alt="{escape(block.alt)}">{caption}</figure>'
    if isinstance(block, Heatmap):
        head = "".join(f"<th>{escape(c)}</th>" for c in [block.corner, *block.columns])
        body = []
        for name, counts in zip(block.rows, block.counts):
            total = max(1, sum(counts))
            cells = []
            for n in counts:
                share = n / total
                r, g, b = shade(share)
                ink = "#fff" if share > 0.5 else "#000"
                cells.append(f'<td style="background:rgb({r},{g},{b});color:{ink}">{int(n)}</td>')
            body.append(f"<tr><th>{escape(name)}</th>{''.join(cells)}</tr>")
        caption = f"<caption>{escape(block.caption)}</caption>" if block.caption else ""
        return f'<table class="heat">{caption}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    if isinstance(block, Charts):
        caption = f"<figcaption>{escape(block.caption)}</figcaption>" if block.caption else ""
        return f'<figure><div class="charts">{"".join(block.svgs)}</div>{caption}</figure>'
    if block.pre:
        return f"<pre>{escape(block.text)}</pre>"
    return f"<p>{escape(block.text)}</p>"


def render_page(title: str, subtitle: str, sections: list[PageSection]) -> str:
    """The whole page as one string."""
    anchors = [_anchor(s, i) for i, s in enumerate(sections)]
    nav = " ".join(f'<a href="#{escape(a)}">{escape(s.heading)}</a>' for a, s in zip(anchors, sections))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # No network: the page may load nothing but what it holds (data: images, inline style).
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">",
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">{escape(subtitle)}</p>',
        f"<nav>{nav}</nav>",
    ]
    for anchor, section in zip(anchors, sections):
        parts.append(f'<section id="{escape(anchor)}"><h2>{escape(section.heading)}</h2>')
        parts += [_block(b) for b in section.blocks]
        parts.append("</section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
