"""The `visiontk` command line. Thin: parse, call the library, print."""
from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from typing import Optional  # noqa: E402

import typer  # noqa: E402

from visiontk import __version__  # noqa: E402
from visiontk.commands import export as export_cmd  # noqa: E402
from visiontk.commands import merge as merge_cmd  # noqa: E402
from visiontk.commands import misc  # noqa: E402
from visiontk.commands import model as model_cmd  # noqa: E402
from visiontk.commands import report as report_cmd  # noqa: E402
from visiontk.commands import transfer as transfer_cmd  # noqa: E402
from visiontk.commands import weights as weights_cmd  # noqa: E402
from visiontk.commands.errors import STATE, OneLineUsageErrors  # noqa: E402
from visiontk.commands.task_commands import task_app  # noqa: E402
from visiontk.tasks.registry import command_spec, task_names  # noqa: E402

app = typer.Typer(
    name="visiontk",
    help="Train and run CNNs for classification, detection and segmentation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=OneLineUsageErrors,
)


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


for _task in task_names():
    app.add_typer(task_app(command_spec(_task)), name=_task)
app.add_typer(transfer_cmd.app, name="transfer")
app.add_typer(misc.recipes_app, name="recipes")
app.add_typer(misc.backbones_app, name="backbones")
app.add_typer(misc.data_app, name="data")
app.add_typer(weights_cmd.app, name="weights")
app.add_typer(model_cmd.app, name="model")
app.command("export")(export_cmd.export)
app.command("merge")(merge_cmd.merge)
app.command("report")(report_cmd.report)


def main() -> None:
    from visiontk import stop_signals

    stop_signals.install()
    app()


if __name__ == "__main__":
    main()
