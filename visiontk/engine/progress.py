"""Progress on stderr: rich bars on a terminal, plain periodic lines otherwise.

Logs from scripts and CI should hold a few readable lines, not thousands of
carriage-return redraws.
"""
from __future__ import annotations

import time

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from visiontk.console import err_console


def _fmt(fields: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())


class ProgressBar:
    def __init__(self, description: str, total: int | None = None, unit: str = "it", enabled: bool = True, interval: float = 10.0):
        self.description, self.total, self.unit, self.enabled = description, total, unit, enabled
        self.interactive = enabled and err_console.is_terminal
        self.interval = interval
        self.count = 0
        self.fields: dict = {}

    def __enter__(self) -> "ProgressBar":
        self.start = self.last_print = time.perf_counter()
        if self.interactive:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=err_console,
                transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total, info="")
        return self

    @property
    def rate(self) -> float:
        return self.count / max(time.perf_counter() - self.start, 1e-9)

    def update(self, advance: int = 1, **fields) -> None:
        self.count += advance
        self.fields.update(fields)
        if not self.enabled:
            return
        info = _fmt(self.fields) + f" {self.rate:.1f} {self.unit}/s"
        if self.interactive:
            self._progress.update(self._task, advance=advance, info=info)
        elif time.perf_counter() - self.last_print >= self.interval:
            self.last_print = time.perf_counter()
            of = f"/{self.total}" if self.total else ""
            err_console.print(f"{self.description} {self.count}{of} {info}", highlight=False, markup=False)

    def __exit__(self, *exc) -> None:
        if self.interactive:
            self._progress.__exit__(*exc)
