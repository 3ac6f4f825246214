"""What the generic train / eval / predict commands need to know about a task.

Help texts, default batch sizes and the task's own option dataclasses: the
CLI builds a task's command group from this alone, so `visiontk --help` does
not import torch or the task's code (tasks/registry.py loads it lazily).
"""
from __future__ import annotations

from dataclasses import dataclass

from visiontk.tasks.options.fields import NoOptions


@dataclass(frozen=True)
class CommandSpec:
    name: str
    help: str  # the command group's
    train_help: str
    eval_help: str
    predict_help: str
    split_help: str  # eval's --split
    plots_help: str  # eval's --plots-dir
    eval_batch_size: int
    predict_batch_size: int
    predict_batch_help: str | None = None
    # predict's --out / --overwrite; None: the task writes no results file
    # (segment: masks into a folder, records on stdout).
    out_help: str | None = None
    overwrite_help: str | None = None
    predict_options: type = NoOptions
    eval_options: type = NoOptions
