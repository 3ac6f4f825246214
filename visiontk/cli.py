"""The `visiontk` command line. Thin: parse, call the library, print."""
from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import importlib  # noqa: E402
from typing import Optional  # noqa: E402

import typer  # noqa: E402

from visiontk import __version__  # noqa: E402
from visiontk.commands.errors import STATE  # noqa: E402
from visiontk.commands.lazy_groups import LazyGroups  # noqa: E402
from visiontk.tasks.registry import task_names  # noqa: E402


def _task_group(task: str):
    from visiontk.commands.task_commands import task_app
    from visiontk.tasks.registry import command_spec

    return task_app(command_spec(task))


def _attribute(module: str, name: str):
    return lambda: getattr(importlib.import_module(module), name)


class _Root(LazyGroups):
    # Each in the order of `visiontk --help` (commands first). A command's module is imported when the
    # command is (commands/lazy_groups.py): `visiontk classify predict` loads
    # neither the other tasks' options nor transfer's, the recipes' or the model's commands.
    groups = {
        **{task: (lambda task=task: _task_group(task)) for task in task_names()},
        "transfer": _attribute("visiontk.commands.transfer", "app"),
        "recipes": _attribute("visiontk.commands.misc", "recipes_app"),
        "backbones": _attribute("visiontk.commands.misc", "backbones_app"),
        "data": _attribute("visiontk.commands.misc", "data_app"),
        "weights": _attribute("visiontk.commands.weights", "app"),
        "model": _attribute("visiontk.commands.model", "app"),
    }
    commands_to_load = {
        "export": _attribute("visiontk.commands.export", "export"),
        "merge": _attribute("visiontk.commands.merge", "merge"),
        "report": _attribute("visiontk.commands.report", "report"),
    }


app = typer.Typer(
    name="visiontk",
    help="Train and run CNNs for classification, detection and segmentation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=_Root,
)
_Root.app = app


def _version(value: bool) -> None:
    if value:
        typer.echo(f"visiontk {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True, help="Print the version."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
):
    STATE["debug"] = debug


def main() -> None:
    from visiontk import stop_signals

    stop_signals.install()
    app()


if __name__ == "__main__":
    main()
