"""`visiontk transfer train|embed`: fine-tuning in stages, and pooled features."""
from __future__ import annotations

from enum import Enum
from typing import List, Optional

import typer

from visiontk.commands.common import (DeviceOpt, SetOpt, TrainCompileOpt, TrainPrecisionOpt, handle_errors,
                                      run_train)

app = typer.Typer(help="Transfer learning: fine-tune pretrained backbones in stages; extract embeddings.",
                  no_args_is_help=True)


class Pool(str, Enum):
    avg = "avg"
    max = "max"


@app.command()
@handle_errors
def train(
    recipe: str = typer.Argument(..., help="Recipe YAML (any task) with model.pretrained and optional stages: "
                                           "(see recipes/transfer/)."),
    set: Optional[List[str]] = SetOpt,
    device: str = DeviceOpt,
    precision: Optional[str] = TrainPrecisionOpt,
    compile: bool = TrainCompileOpt,
    project: Optional[str] = typer.Option(None, help="Runs folder (default: the recipe's output.project, 'runs')."),
    name: Optional[str] = typer.Option(None, help="Run name (default: the recipe's name; -2, -3... when taken)."),
    resume: Optional[str] = typer.Option(None, help="Continue a run from its last.pt (or run folder), in whatever stage it was."),
):
    """Fine-tune from pretrained weights, stage after stage, in one run directory."""
    from visiontk.console import warn
    from visiontk.recipe import apply_overrides, read_yaml, resolve_recipe_path

    # Only the task and the weights are peeked at here; run_train validates the recipe.
    raw = read_yaml(resolve_recipe_path(recipe))
    raw = apply_overrides(raw if isinstance(raw, dict) else {}, list(set or []))
    model = raw.get("model") if isinstance(raw.get("model"), dict) else {}
    if model.get("pretrained", "none") in ("", "none", None) and not resume:
        warn(f"{recipe}: model.pretrained is none: this run starts from random weights")
    run_train(str(raw.get("task")), recipe, set, device, project, name, resume, precision, compile)


@app.command()
@handle_errors
def embed(
    model: str = typer.Argument(..., help="A checkpoint of any task (its backbone is used) or a backbone name "
                                          "(with its ImageNet weights)."),
    sources: List[str] = typer.Argument(..., help="Image files, folders, globs, or - to read paths from stdin."),
    out: Optional[str] = typer.Option(None, help="FILE.npy (rows in input order, paths in FILE.paths.txt) or - "
                                                 "for jsonl on stdout (default)."),
    pretrained: Optional[str] = typer.Option(None, help="Weights of a backbone name: imagenet (default when it has "
                                                        "some), a torchvision weights name, a file, or none."),
    image_size: Optional[int] = typer.Option(None, "--image-size", min=8, help="Input side (default: the checkpoint's, "
                                                                               "or the weights' own, e.g. 224)."),
    pool: Pool = typer.Option(Pool.avg, help="Global pooling of the deepest feature map."),
    normalize: bool = typer.Option(False, "--normalize", help="L2-normalise each vector (cosine similarity = dot product)."),
    batch_size: int = typer.Option(32, min=1),
    overwrite: bool = typer.Option(False, help="Allow --out to replace existing files."),
    device: str = DeviceOpt,
    workers: int = typer.Option(2, min=0, help="Image-decoding threads."),
):
    """One pooled feature vector per image, streamed: jsonl on stdout or a .npy file + index."""
    from visiontk.console import info
    from visiontk.engine.embed import run_embed
    from visiontk.errors import JobError

    stats = run_embed(model, sources, out, overwrite, pretrained, image_size, pool.value, normalize, device,
                      batch_size, workers)
    if stats["errors"]:
        raise JobError(f"{stats['errors']} of {stats['images']} images could not be read")
    info(f"embedded {stats['images']} images ({stats['dim']}-d)")
