"""The tables `eval` prints: one summary row over the split, one row per class.

Every task's report has this shape, so the three share one renderer and one
way of writing numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from rich.table import Table

from visiontk.console import print_table


# Past this many classes the epoch line names only the worst and best few, and
# results.csv leaves the per-class columns to per_class.csv (one row per epoch
# and class): a 130-class set would otherwise print 130 IoUs every epoch and
# give results.csv 139 columns.
MANY_CLASSES = 20
EXTREMES = 3


def defined(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def worst_and_best(scores: dict[str, object], k: int = EXTREMES) -> str:
    """'worst a=0.01 b=0.2 c=0.3 | best z=0.99 y=0.98 x=0.97' over the defined scores
    (a class absent from the split has none): worst first, best from the top, no
    class in both (with fewer than 2k defined, the worst get the smaller half)."""
    ranked = sorted(((v, name) for name, v in scores.items() if defined(v)), key=lambda t: t[0])
    n_worst = min(k, len(ranked) // 2)
    n_best = min(k, len(ranked) - n_worst)
    fmt = lambda items: " ".join(f"{name}={v:.4g}" for v, name in items)  # noqa: E731
    parts = ([f"worst {fmt(ranked[:n_worst])}"] if n_worst else []) + ([f"best {fmt(ranked[::-1][:n_best])}"] if n_best else [])
    return " | ".join(parts)


@dataclass
class Report:
    title: str
    summary: dict[str, object]  # column -> value, one row
    # One row per class, column -> value; the first column (the class name) is left-aligned.
    per_class: list[dict[str, object]] = field(default_factory=list)


def cell(value: object) -> str:
    """Scores with 4 decimals, counts as they are; an undefined score (None, NaN) as '-'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _table(title: str, rows: list[dict[str, object]], first_left: bool) -> Table:
    table = Table(title=title, show_header=True)
    for i, column in enumerate(rows[0]):
        table.add_column(column, justify="left" if first_left and i == 0 else "right")
    for row in rows:
        table.add_row(*(cell(v) for v in row.values()))
    return table


def print_report(report: Report) -> None:
    print_table(_table(report.title, [report.summary], first_left=False))
    if report.per_class:
        print_table(_table("per class", report.per_class, first_left=True))
