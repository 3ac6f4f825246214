"""`visiontk detect train|eval|predict`."""
from __future__ import annotations

from enum import Enum
from typing import List, Optional

import typer

from visiontk.commands.common import (CompileOpt, DeviceOpt, LoaderOpt, PrecisionOpt, SetOpt, TrainCompileOpt,
                                      TrainPrecisionOpt, handle_errors, run_eval, run_predict, run_train)

app = typer.Typer(help="Object detection (YOLO-v1).", no_args_is_help=True)


class Format(str, Enum):
    jsonl = "jsonl"
    coco = "coco"
    yolo = "yolo"


def _given(**options) -> dict:
    # Unset options fall back to the defaults stored in the checkpoint.
    return {k: v for k, v in options.items() if v is not None}


ConfHelp = "Score threshold (class probability x box confidence)"
IouOpt = typer.Option(None, "--iou", min=0.0, max=1.0, help="NMS IoU threshold (default from the checkpoint: 0.5).")
MaxDetOpt = typer.Option(None, "--max-det", min=1, help="Most detections kept per image (default from the checkpoint: 100).")


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
    """Train a detector from a recipe."""
    run_train("detect", recipe, set, device, project, name, resume, precision, compile)


@app.command("eval")
@handle_errors
def eval_(
    checkpoint: str = typer.Argument(..., help="A detect checkpoint (best.pt)."),
    data: Optional[str] = typer.Argument(None, help="Data root (default: the one in the checkpoint's recipe)."),
    split: str = typer.Option("val", help="Split to evaluate (train, val, or a split name of the data set)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout instead of tables."),
    conf: Optional[float] = typer.Option(None, "--conf", min=0.0, max=1.0,
                                         help=f"{ConfHelp} (default 0.001: mAP needs the whole precision-recall curve)."),
    iou: Optional[float] = IouOpt,
    max_det: Optional[int] = MaxDetOpt,
    device: str = DeviceOpt,
    batch_size: int = typer.Option(32, min=1),
    plots_dir: Optional[str] = typer.Option(None, help="Where the PR curve PNG goes (default: next to the checkpoint)."),
):
    """COCO mAP@[.5:.95], mAP@.5, mAP@.75 and per-class AP@.5 on a split (pycocotools)."""
    run_eval("detect", checkpoint, data, split, json_out, device, batch_size, plots_dir,
             options=_given(eval_conf=conf, iou=iou, max_det=max_det))


@app.command()
@handle_errors
def predict(
    checkpoint: str = typer.Argument(..., help="A detect checkpoint (best.pt)."),
    sources: List[str] = typer.Argument(..., help="Image files, folders, globs, or - to read paths from stdin."),
    conf: Optional[float] = typer.Option(None, "--conf", min=0.0, max=1.0, help=f"{ConfHelp} (default from the checkpoint: 0.25)."),
    iou: Optional[float] = IouOpt,
    max_det: Optional[int] = MaxDetOpt,
    format: Format = typer.Option(Format.jsonl, "--format",
                                  help="jsonl (one line per image), coco (a COCO results json) or yolo (a txt per image into --out DIR)."),
    out: Optional[str] = typer.Option(None, help="Output file (jsonl, coco; default stdout) or folder (yolo)."),
    overwrite: bool = typer.Option(False, help="Allow --out / --save-images to replace existing files."),
    save_images: Optional[str] = typer.Option(None, "--save-images", help="Also write each image with its boxes drawn into this folder."),
    batch_size: int = typer.Option(32, min=1),
    device: str = DeviceOpt,
    workers: int = typer.Option(2, min=0, help="Image-decoding workers (threads on the CPU, processes with a GPU)."),
    precision: str = PrecisionOpt,
    compile: bool = CompileOpt,
    loader: str = LoaderOpt,
):
    """Detect objects; boxes in pixel xyxy of the original image, with scores and labels."""
    from visiontk.tasks.detect.writers import prediction_writers

    factory, out_file = prediction_writers(format.value, out, save_images, overwrite)
    run_predict("detect", checkpoint, sources, factory, out_file, overwrite, device, batch_size, workers,
                _given(conf=conf, iou=iou, max_det=max_det), precision=precision, compile=compile, loader=loader)
