"""`visiontk model summary|features`: look inside a checkpoint's model."""
from __future__ import annotations

import sys
from typing import Optional

import typer

from visiontk.commands.errors import handle_errors
from visiontk.commands.summary_view import print_summary
from visiontk.outputs.json_text import dumps

app = typer.Typer(help="Look inside a trained model: layers, receptive fields, feature maps.", no_args_is_help=True)

DEPTH = typer.Option(None, "--depth", min=1, help="Rows for the modules down to this depth (blocks) instead of one "
                                                  "per layer; depth = dots in the name + 1.")
BATCH = typer.Option(32, "--batch", min=1, help="Batch size of the forward+backward memory estimate.")
JSON = typer.Option(False, "--json", help="One JSON document (layers and totals) on stdout instead of the table.")


@app.command("summary")
@handle_errors
def summary(
    checkpoint: str = typer.Argument(..., help="A visiontk checkpoint (best.pt, last.pt)."),
    depth: Optional[int] = DEPTH,
    image_size: Optional[int] = typer.Option(None, "--image-size", min=8, max=8192,
                                             help="Input side (default: the checkpoint's input size)."),
    batch: int = BATCH,
    json_out: bool = JSON,
):
    """Per layer: output shape, parameters, mult-adds, stride, receptive field (size, jump, start); totals and memory."""
    from visiontk.engine.summary import summarize_checkpoint

    result = summarize_checkpoint(checkpoint, image_size, depth, batch)
    print_summary(result, checkpoint, json_out)


@app.command("features")
@handle_errors
def features(
    checkpoint: str = typer.Argument(..., help="A visiontk checkpoint."),
    image: str = typer.Argument(..., help="One image file."),
    layer: str = typer.Option(..., "--layer", help="A layer or block name as 'visiontk model summary' prints it."),
    out: str = typer.Option(..., "--out", help="Output folder; writes <image stem>.<layer>.png (never replaces a file)."),
):
    """The layer's activation maps for the image as one PNG: a grid of channels, each scaled to its own range."""
    from visiontk.engine.features import write_feature_maps

    record = write_feature_maps(checkpoint, image, layer, out)
    sys.stdout.write(dumps(record) + "\n")
