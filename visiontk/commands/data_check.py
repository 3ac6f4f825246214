"""`visiontk data check` and `data stats`: parse, call visiontk.tasks.data_check, print."""
from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from visiontk.commands.errors import handle_errors


class CheckTask(str, Enum):
    classify = "classify"
    detect = "detect"
    segment = "segment"


TARGET = typer.Argument(..., help="A recipe (file or shipped name), or a data set folder (or YOLO data yaml) whose "
                                  "layout is detected: ImageFolder, COCO, YOLO, VOC, mask folders.")
TASK = typer.Option(None, "--task", help="The task to read a folder for (default: the first layout found).")
SET = typer.Option(None, "--set", help="Override a recipe key, e.g. --set data.image_size=448 (value parsed as YAML).")
JSON = typer.Option(False, "--json", help="Print the summary as one JSON object on stdout.")
OUT_DIR = typer.Option(None, "--out-dir", help="Where summary.json and the plots go (default runs/data-check/<name>; "
                                               "never inside the data set).")
OVERWRITE = typer.Option(False, "--overwrite", help="Write into a non-empty --out-dir.")
PLOTS = typer.Option(True, "--plots/--no-plots", help="Write the PNG plots beside summary.json.")


def _run(target: str, task: Optional[CheckTask], set: Optional[List[str]], json_out: bool, out_dir: Optional[Path],
         overwrite: bool, plots: bool, verdict: bool) -> dict:
    from visiontk.console import out_console
    from visiontk.engine.progress import ProgressBar
    from visiontk.outputs.json_text import dumps
    from visiontk.tasks.data_check import check_target, summary_lines

    summary = check_target(target, task.value if task else None, set or [], out_dir, overwrite,
                           progress=lambda description, total: ProgressBar(description, total, unit="img"), plots=plots)
    if not verdict:
        summary.pop("clean")
    if json_out:
        sys.stdout.write(dumps(summary) + "\n")
    else:
        for line in summary_lines(summary, verdict):
            out_console.print(line, markup=False, highlight=False)
    return summary


@handle_errors
def check(target: str = TARGET, task: Optional[CheckTask] = TASK, set: Optional[List[str]] = SET,
          json_out: bool = JSON, out_dir: Optional[Path] = OUT_DIR, overwrite: bool = OVERWRITE, plots: bool = PLOTS):
    """Read a data set as training would, without training: report its problems and statistics.

    Exit 0 when clean (warnings, listed in the summary, do not change it), 1 when the set has problems (each
    named with its first offending files), 2 for bad usage."""
    from visiontk.console import plural
    from visiontk.errors import JobError

    summary = _run(target, task, set, json_out, out_dir, overwrite, plots, verdict=True)
    if not summary["clean"]:
        raise JobError(f"{plural(summary['errors'], 'problem')} in the data set {summary['source']} "
                       f"(report in {summary['out_dir']})")


@handle_errors
def stats(target: str = TARGET, task: Optional[CheckTask] = TASK, set: Optional[List[str]] = SET,
          json_out: bool = JSON, out_dir: Optional[Path] = OUT_DIR, overwrite: bool = OVERWRITE, plots: bool = PLOTS):
    """The report of `data check` without its verdict: exit 0 whatever the set holds."""
    _run(target, task, set, json_out, out_dir, overwrite, plots, verdict=False)
