"""A task's own predict and eval options, as typed dataclasses.

Each field is one command-line option: `option()` records its help, flags and
bounds next to its default, so the generic commands (commands/task_commands.py)
turn a task's dataclass into exactly its options, and the library receives the
same typed object the command line built.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class OptionMeta:
    help: str | None = None
    # Explicit flags, e.g. ("--out-dir",); empty: derived from the field name
    # (and --x/--no-x for a bool), as Typer does for a plain parameter.
    flags: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    # A None value is taken from this key of the checkpoint's stored predict
    # settings (ckpt["predict"]), so a threshold trained with the model applies
    # unless the user gives one.
    from_checkpoint: str | None = None


def option(default: Any, help: str | None = None, *, flags: tuple[str, ...] = (), min: float | None = None,
           max: float | None = None, from_checkpoint: str | None = None) -> Any:
    """A dataclass field that is also a command-line option."""
    meta = OptionMeta(help, tuple(flags), min, max, from_checkpoint)
    return dataclasses.field(default=default, metadata={"option": meta})


def option_meta(field: dataclasses.Field) -> OptionMeta:
    return field.metadata.get("option") or OptionMeta()


@dataclass(frozen=True)
class NoOptions:
    """A task with no options of its own for a command."""


def with_checkpoint_defaults(options: T, stored: Mapping[str, Any]) -> T:
    """`options` with every None field that names a stored setting filled from `stored`."""
    filled = {}
    for f in dataclasses.fields(options):
        key = option_meta(f).from_checkpoint
        if key is not None and getattr(options, f.name) is None and key in stored:
            filled[f.name] = stored[key]
    return dataclasses.replace(options, **filled) if filled else options
