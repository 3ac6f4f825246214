"""The sections a task and its data formats add to the shared schema, and the format registry.

A task registers its `model.head` and `loss` models (Task.head_schema,
loss_schema) and names the data formats it reads; each data format registers
the model of its `data.options` here, once, from the module that reads it:

    register_format_options("imagefolder", ImageFolderOptions)

The core stays below the tasks and the data layer: they hand their models
down in a TaskSections, and nothing here imports them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from visiontk.recipe.fields import Section

_FORMAT_OPTIONS: dict[str, type[Section]] = {}


def register_format_options(name: str, options: type[Section]) -> None:
    """Make `options` the model of `data.options` when `data.format` is `name`."""
    _FORMAT_OPTIONS[name] = options


def format_options(name: str) -> type[Section]:
    try:
        return _FORMAT_OPTIONS[name]
    except KeyError:
        raise LookupError(f"data format {name!r} registered no options model "
                          f"(registered: {', '.join(_FORMAT_OPTIONS) or 'none'})") from None


@dataclass(frozen=True)
class TaskSections:
    """What validates the task-specific parts of a recipe."""

    task: str
    head: type[Section]
    loss: type[Section]
    # data.format -> the model of data.options; the keys are the formats the task reads.
    data_options: Mapping[str, type[Section]] = field(default_factory=dict)
