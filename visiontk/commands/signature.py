"""Commands built from lists of parameters.

Typer reads a command's parameters from its function's `__signature__`, so
one body can serve every task, each with the parameter list its options
make: shared parameters (shared_options.py) plus the fields of the task's
option dataclasses (tasks/options/).
"""
from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import typer

from visiontk.commands.errors import handle_errors
from visiontk.tasks.options.fields import option_meta


@dataclass(frozen=True)
class Param:
    name: str  # the Python name the body receives
    annotation: Any
    default: Any  # a typer.Argument or typer.Option


def build_command(doc: str, params: Sequence[Param], body: Callable[..., None]) -> Callable[..., None]:
    """A Typer command with `params`, calling `body(**values)`; errors become one line."""
    names = [p.name for p in params]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # a task option named like a shared one would silently shadow it
        raise ValueError(f"parameter defined twice: {', '.join(twice)}")

    def command(**values) -> None:
        body(**values)

    command.__signature__ = inspect.Signature(
        [inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.default, annotation=p.annotation)
         for p in params])
    command.__doc__ = doc
    return handle_errors(command)


def option_params(options_type: type) -> list[Param]:
    """One Typer option per field of a task's option dataclass, with its help, flags and bounds."""
    hints = typing.get_type_hints(options_type)
    params = []
    for f in dataclasses.fields(options_type):
        meta = option_meta(f)
        params.append(Param(f.name, hints[f.name],
                            typer.Option(f.default, *meta.flags, help=meta.help, min=meta.min, max=meta.max)))
    return params


def take_options(options_type: type, values: dict) -> Any:
    """The task's options object made from (and removed from) a command's values."""
    return options_type(**{f.name: values.pop(f.name) for f in dataclasses.fields(options_type)})
