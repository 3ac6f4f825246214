"""The tables `eval` prints: one summary row over the split, one row per class.

Every task's report has this shape, so the three share one renderer and one
way of writing numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from rich.table import Table

from visiontk.console import err_console


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
    err_console.print(_table(report.title, [report.summary], first_left=False))
    if report.per_class:
        err_console.print(_table("per class", report.per_class, first_left=True))
