"""`visiontk segment train|eval|predict`."""
from __future__ import annotations

from typing import List, Optional

import typer

from visiontk.commands.common import (CompileOpt, DeviceOpt, LoaderOpt, PrecisionOpt, SetOpt, TrainCompileOpt,
                                      TrainPrecisionOpt, handle_errors, run_eval, run_predict, run_train)

app = typer.Typer(help="Semantic segmentation (FCN, U-Net).", no_args_is_help=True)


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
    """Train a segmentation model from a recipe."""
    run_train("segment", recipe, set, device, project, name, resume, precision, compile)


@app.command("eval")
@handle_errors
def eval_(
    checkpoint: str = typer.Argument(..., help="A segment checkpoint (best.pt)."),
    data: Optional[str] = typer.Argument(None, help="Data root (default: the one in the checkpoint's recipe)."),
    split: str = typer.Option("val", help="Split: train, val (the recipe's), or another split name of the data set."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout instead of tables."),
    device: str = DeviceOpt,
    batch_size: int = typer.Option(16, min=1),
    plots_dir: Optional[str] = typer.Option(None, help="Where the confusion matrix PNG goes (default: next to the checkpoint)."),
    at: str = typer.Option("image-size", "--at", help="Where predictions meet the truth: image-size (each image's own "
                           "size: logits upsampled as predict writes its masks; as VOC and Cityscapes score) | "
                           "input-size (masks shrunk to the model's input, as the per-epoch validation of training)."),
):
    """mIoU, per-class IoU, pixel accuracy and mean Dice over a split (one confusion matrix).

    Scored at each image's own size by default; the output says where ('scored_at')."""
    from visiontk.errors import UserError

    if at not in ("image-size", "input-size"):
        raise UserError(f"--at: '{at}' is not one of image-size, input-size")
    run_eval("segment", checkpoint, data, split, json_out, device, batch_size, plots_dir,
             options={"at": at.replace("-", "_")})


@app.command()
@handle_errors
def predict(
    checkpoint: str = typer.Argument(..., help="A segment checkpoint (best.pt)."),
    sources: List[str] = typer.Argument(..., help="Image files, folders, globs, or - to read paths from stdin."),
    out_dir: Optional[str] = typer.Option(None, "--out-dir", help="Folder for the mask PNGs (default: runs/segment/predict, "
                                          "-2, -3... when taken). Existing files are never replaced."),
    overlay: bool = typer.Option(False, "--overlay", help="Also write <name>_overlay.jpg: the image tinted by class."),
    tile: Optional[int] = typer.Option(None, "--tile", min=8, help="Predict at the image's own resolution in SIZE x SIZE "
                                       "tiles, stitched (for images larger than the model's input)."),
    tile_overlap: int = typer.Option(32, "--tile-overlap", min=0, help="Pixels of context on each side of a tile's "
                                     "kept centre."),
    batch_size: int = typer.Option(8, min=1, help="Images per batch (tiles per batch with --tile)."),
    device: str = DeviceOpt,
    workers: int = typer.Option(2, min=0, help="Image-decoding workers (threads on the CPU, processes with a GPU)."),
    precision: str = PrecisionOpt,
    compile: bool = CompileOpt,
    loader: str = LoaderOpt,
):
    """Segment images: a class-index mask PNG per image (original size) and one JSON line per image on stdout."""
    from visiontk.engine.writers import JsonlWriter
    from visiontk.tasks.segment.task import predict_options

    options = predict_options(out_dir, overlay, tile, tile_overlap, batch_size)
    # Tiled images are full size: decode one at a time, batch the tiles instead.
    run_predict("segment", checkpoint, sources, JsonlWriter, None, False, device, 1 if tile else batch_size, workers, options,
                precision=precision, compile=compile, loader=loader)
