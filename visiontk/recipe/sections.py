"""The sections a task and its data formats add to the shared schema, and the format registry.

A task registers its `model.head` and `loss` models (Task.head_schema,
loss_schema) and names the data formats it reads; each data format registers
the model of its `data.options` here, once, from the module that reads it:

    register_format_options("coco", CocoOptions)

A task that reads a format its own way registers a model for itself, which it
gets instead of the format's: an extension (detect adds `min_visibility` to
every format's options) or another layout under the same name (segment reads
VOC's SegmentationClass folders, not its xml boxes):

    register_format_options("voc", VocSegmentationOptions, task="segment")

The core stays below the tasks and the data layer: they hand their models
down in a TaskSections, and nothing here imports them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

from visiontk.recipe.fields import Section

# (task or None for every task, data.format) -> the model of data.options
_FORMAT_OPTIONS: dict[tuple[Optional[str], str], type[Section]] = {}


def register_format_options(name: str, options: type[Section], task: Optional[str] = None) -> None:
    """Make `options` the model of `data.options` when `data.format` is `name`
    (for `task` only when given: its own reading of the format)."""
    _FORMAT_OPTIONS[(task, name)] = options


def format_options(name: str, task: Optional[str] = None) -> type[Section]:
    """The model of data.options for format `name`: the task's own if it registered one, else the format's."""
    for key in ((task, name), (None, name)):
        if key in _FORMAT_OPTIONS:
            return _FORMAT_OPTIONS[key]
    registered = sorted({fmt for _, fmt in _FORMAT_OPTIONS})
    raise LookupError(f"data format {name!r} registered no options model "
                      f"(registered: {', '.join(registered) or 'none'})")


@dataclass(frozen=True)
class TaskSections:
    """What validates the task-specific parts of a recipe."""

    task: str
    head: type[Section]
    loss: type[Section]
    # data.format -> the model of data.options; the keys are the formats the task reads.
    data_options: Mapping[str, type[Section]] = field(default_factory=dict)
