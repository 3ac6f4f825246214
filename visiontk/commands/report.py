"""`visiontk report RUN_DIR`: rebuild a run's report.html from its files."""
from __future__ import annotations

import typer

from visiontk.commands.errors import handle_errors
from visiontk.console import info


@handle_errors
def report(run_dir: str = typer.Argument(..., help="A training run directory (runs/<task>/<name>).")) -> None:
    """Rebuild RUN_DIR/report.html (self-contained: open it offline) from the run's files."""
    from visiontk.engine.run_report import write_report

    path = write_report(run_dir)
    info(f"wrote {path}")
    typer.echo(str(path))
