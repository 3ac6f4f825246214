"""`visiontk classify train|eval|predict`."""
from __future__ import annotations

from enum import Enum
from typing import List, Optional

import typer

from visiontk.commands.common import (CompileOpt, DeviceOpt, LoaderOpt, PrecisionOpt, SetOpt, TrainCompileOpt,
                                      TrainPrecisionOpt, handle_errors, run_eval, run_predict, run_train)

app = typer.Typer(help="Image classification.", no_args_is_help=True)


class Format(str, Enum):
    jsonl = "jsonl"
    csv = "csv"


@app.command()
@handle_errors
def train(
    recipe: str = typer.Argument(..., help="Recipe YAML file or shipped recipe name (see 'visiontk recipes list')."),
    set: Optional[List[str]] = SetOpt,
    device: str = DeviceOpt,
    precision: Optional[str] = TrainPrecisionOpt,
    compile: bool = TrainCompileOpt,
    project: Optional[str] = typer.Option(None, help="Runs folder (default: the recipe's output.project, 'runs')."),
    name: Optional[str] = typer.Option(None, help="Run name (default: the recipe's name; -2, -3... when taken)."),
    resume: Optional[str] = typer.Option(None, help="Continue a run from its last.pt (or run folder)."),
):
    """Train a classifier from a recipe."""
    run_train("classify", recipe, set, device, project, name, resume, precision, compile)


@app.command("eval")
@handle_errors
def eval_(
    checkpoint: str = typer.Argument(..., help="A classify checkpoint (best.pt)."),
    data: Optional[str] = typer.Argument(None, help="Data root (default: the one in the checkpoint's recipe)."),
    split: str = typer.Option("val", help="Split folder under the data root."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout instead of tables."),
    device: str = DeviceOpt,
    batch_size: int = typer.Option(64, min=1),
    plots_dir: Optional[str] = typer.Option(None, help="Where the confusion matrix PNG goes (default: next to the checkpoint)."),
):
    """Top-1, top-5 and per-class precision/recall on a split."""
    run_eval("classify", checkpoint, data, split, json_out, device, batch_size, plots_dir)


@app.command()
@handle_errors
def predict(
    checkpoint: str = typer.Argument(..., help="A classify checkpoint (best.pt)."),
    sources: List[str] = typer.Argument(..., help="Image files, folders, globs, or - to read paths from stdin."),
    batch_size: int = typer.Option(32, min=1),
    topk: int = typer.Option(5, min=1, help="How many classes to report per image."),
    format: Format = typer.Option(Format.jsonl, "--format", help="jsonl or csv."),
    out: Optional[str] = typer.Option(None, help="Write results to this file instead of stdout."),
    overwrite: bool = typer.Option(False, help="Allow --out to replace an existing file."),
    device: str = DeviceOpt,
    workers: int = typer.Option(2, min=0, help="Image-decoding workers (threads on the CPU, processes with a GPU)."),
    precision: str = PrecisionOpt,
    compile: bool = CompileOpt,
    loader: str = LoaderOpt,
):
    """Classify images; one JSON line (or CSV row) per image on stdout."""
    from visiontk.engine.writers import CsvWriter, JsonlWriter

    writer = CsvWriter if format == Format.csv else JsonlWriter
    run_predict("classify", checkpoint, sources, writer, out, overwrite, device, batch_size, workers, {"topk": topk},
                precision=precision, compile=compile, loader=loader)
