"""`visiontk export CHECKPOINT --format onnx|torchscript|openvino`."""
from __future__ import annotations

import sys
from enum import Enum
from typing import Optional

import typer

from visiontk.commands.errors import handle_errors
from visiontk.outputs.json_text import dumps


class ExportFormat(str, Enum):
    onnx = "onnx"
    torchscript = "torchscript"
    openvino = "openvino"


@handle_errors
def export(
    checkpoint: str = typer.Argument(..., help="A checkpoint of any task (best.pt)."),
    format: ExportFormat = typer.Option(..., "--format", help="onnx, torchscript or openvino (IR: .xml + .bin)."),
    dynamic_batch: bool = typer.Option(False, "--dynamic-batch", help="Any batch size (else the fixed --batch-size)."),
    batch_size: int = typer.Option(1, "--batch-size", min=1, help="Batch size of a fixed-batch export."),
    out: Optional[str] = typer.Option(None, help="Output file (default: next to the checkpoint, "
                                                 "best.onnx / best.torchscript.pt / best.xml); metadata goes to OUT.json."),
    overwrite: bool = typer.Option(False, help="Replace existing output files."),
):
    """Export the model's raw outputs, with a JSON sidecar (classes, input size, normalisation,
    task, post-processing settings); checks the export against PyTorch on random input."""
    from visiontk.engine.export import export_checkpoint

    result = export_checkpoint(checkpoint, format.value, out, dynamic_batch, batch_size, overwrite)
    sys.stdout.write(dumps(result) + "\n")
