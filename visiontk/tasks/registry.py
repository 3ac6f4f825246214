"""Tasks by name, so nothing else needs `if task == ...` chains."""
from __future__ import annotations

import importlib

from visiontk.errors import UserError

# name -> module that defines and registers it; imported on first use so that
# `visiontk classify ...` does not pay for loading every task.
_TASK_MODULES = {
    "classify": "visiontk.tasks.classify",
    "detect": "visiontk.tasks.detect.task",
    "segment": "visiontk.tasks.segment.task",
}
# name -> module holding its `COMMANDS` (tasks/options/spec.py): light, what the
# CLI builds the task's commands from without importing the task itself.
_COMMAND_SPECS = {
    "classify": "visiontk.tasks.options.classify",
    "detect": "visiontk.tasks.options.detect",
    "segment": "visiontk.tasks.options.segment",
}
_TASKS: dict = {}


def register_task(task) -> None:
    _TASKS[task.name] = task


def task_names() -> list[str]:
    return list(_TASK_MODULES)


def _import(module: str, name: str, source: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith(module):
            raise UserError(f"{source}: task '{name}' is not available in this build") from None
        raise


def get_task(name: str, source: str = "recipe"):
    if name not in _TASKS:
        module = _TASK_MODULES.get(name)
        if module is None:
            raise UserError(f"{source}: unknown task {name!r} (known: {', '.join(_TASK_MODULES)})")
        _import(module, name, source)
    return _TASKS[name]


def command_spec(name: str):
    """The task's `CommandSpec`, without importing the task."""
    return _import(_COMMAND_SPECS[name], name, "cli").COMMANDS
