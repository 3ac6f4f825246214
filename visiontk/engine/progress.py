"""Progress on stderr: rich bars on a terminal, plain periodic lines otherwise.

Logs from scripts and CI should hold a few readable lines, not thousands of
carriage-return redraws. On a terminal the bar is redrawn a few times a second and
the counts reach rich at most every REDRAW seconds: a training step of a small model
takes a few milliseconds, and rich's per-update bookkeeping plus a 10 Hz redraw
thread took 2-4% of a core (benchmarks/README.md).
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

# Seconds between the counts handed to rich, and rich's redraws per second.
REDRAW = 0.25


def _fmt(fields: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())


class ProgressBar:
    def __init__(self, description: str, total: int | None = None, unit: str = "it", enabled: bool = True, interval: float = 10.0):
        self.description, self.total, self.unit, self.enabled = description, total, unit, enabled
        self.interactive = enabled and err_console.is_terminal
        self.interval = interval
        self.count = 0
        self.shown = 0  # the part of `count` rich has been given
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
                refresh_per_second=1 / REDRAW,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total, info="")
        return self

    @property
    def rate(self) -> float:
        return self.count / max(time.perf_counter() - self.start, 1e-9)

    def _info(self) -> str:
        return _fmt(self.fields) + f" {self.rate:.1f} {self.unit}/s"

    def _show(self) -> None:
        self._progress.update(self._task, advance=self.count - self.shown, info=self._info())
        self.shown = self.count

    def update(self, advance: int = 1, **fields) -> None:
        self.count += advance
        self.fields.update(fields)
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.interactive:
            if now - self.last_print >= REDRAW or self.count == self.total:
                self.last_print = now
                self._show()
        elif now - self.last_print >= self.interval:
            self.last_print = now
            of = f"/{self.total}" if self.total else ""
            err_console.print(f"{self.description} {self.count}{of} {self._info()}", highlight=False, markup=False)

    def __exit__(self, *exc) -> None:
        if self.interactive:
            if self.count != self.shown:
                self._show()
            self._progress.__exit__(*exc)
