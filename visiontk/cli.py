"""The `visiontk` command line. Thin: parse, call the library, print."""
from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from typing import Optional  # noqa: E402

import typer  # noqa: E402

from visiontk import __version__  # noqa: E402
from visiontk.commands import classify as classify_cmd  # noqa: E402
from visiontk.commands import export as export_cmd  # noqa: E402
from visiontk.commands import misc  # noqa: E402
from visiontk.commands import weights as weights_cmd  # noqa: E402
from visiontk.commands.common import STATE  # noqa: E402

app = typer.Typer(
    name="visiontk",
    help="Train and run CNNs for classification, detection and segmentation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
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


app.add_typer(classify_cmd.app, name="classify")
app.add_typer(misc.recipes_app, name="recipes")
app.add_typer(misc.backbones_app, name="backbones")
app.add_typer(misc.data_app, name="data")
app.add_typer(weights_cmd.app, name="weights")
app.command("export")(export_cmd.export)

# Task command groups written alongside their tasks; absent ones are simply not offered.
for _module, _name in (("visiontk.commands.detect", "detect"), ("visiontk.commands.segment", "segment"),
                       ("visiontk.commands.transfer", "transfer")):
    try:
        import importlib

        app.add_typer(importlib.import_module(_module).app, name=_name)
    except ModuleNotFoundError as _e:
        if _e.name != _module:
            raise


def main() -> None:
    app()


if __name__ == "__main__":
    main()
