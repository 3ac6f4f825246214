"""`visiontk transfer train|embed`: fine-tuning in stages, and pooled features."""
from __future__ import annotations

from enum import Enum
from typing import Optional

import typer

from visiontk.commands import shared_options as shared
from visiontk.commands.signature import Param, build_command
from visiontk.commands.task_commands import fail_on_unreadable, run_train, train_params
from visiontk.recipe.schema import MAX_IMAGE_SIZE

app = typer.Typer(help="Transfer learning: fine-tune pretrained backbones in stages; extract embeddings.",
                  no_args_is_help=True)


class Pool(str, Enum):
    avg = "avg"
    max = "max"


def train(recipe: str, set: Optional[list[str]], resume: Optional[str], **values) -> None:
    from visiontk.console import warn
    from visiontk.recipe import apply_overrides, read_yaml, resolve_recipe_path

    # Only the task and the weights are peeked at here; run_train validates the recipe.
    raw = read_yaml(resolve_recipe_path(recipe))
    raw = apply_overrides(raw if isinstance(raw, dict) else {}, list(set or []))
    model = raw.get("model") if isinstance(raw.get("model"), dict) else {}
    if model.get("pretrained", "none") in ("", "none", None) and not resume:
        warn(f"{recipe}: model.pretrained is none: this run starts from random weights")
    run_train(str(raw.get("task")), recipe=recipe, set=set, resume=resume, **values)


def embed(model: str, sources: list[str], out: Optional[str], pretrained: Optional[str], image_size: Optional[int],
          pool: Pool, normalize: bool, batch_size: int, overwrite: bool, device: str, workers: int) -> None:
    from visiontk.console import info, plural
    from visiontk.engine.embed import run_embed

    stats = run_embed(model, sources, out, overwrite, pretrained, image_size, pool.value, normalize, device,
                      batch_size, workers)
    fail_on_unreadable(stats)
    info(f"embedded {plural(stats['images'], 'image')} ({stats['dim']}-d)")


app.command("train")(build_command(
    "Fine-tune from pretrained weights, stage after stage, in one run directory.",
    train_params(recipe_help="Recipe YAML (any task) with model.pretrained and optional stages: (see recipes/transfer/).",
                 resume_help="Continue a run from its last.pt (or run folder), in whatever stage it was."),
    train))
app.command("embed")(build_command(
    "One pooled feature vector per image, streamed: jsonl on stdout or a .npy file + index.",
    [Param("model", str, typer.Argument(..., help="A checkpoint of any task (its backbone is used) or a backbone name "
                                                  "(with its ImageNet weights).")),
     shared.SOURCES,
     shared.out("FILE.npy (rows in input order, paths in FILE.paths.txt) or - for jsonl on stdout (default)."),
     Param("pretrained", Optional[str], typer.Option(None, help="Weights of a backbone name: imagenet (default when it "
                                                                "has some), a torchvision weights name, a file, or none.")),
     Param("image_size", Optional[int], typer.Option(None, "--image-size", min=8, max=MAX_IMAGE_SIZE, help="Input side (default: the "
                                                     "checkpoint's, or the weights' own, e.g. 224).")),
     Param("pool", Pool, typer.Option(Pool.avg, help="Global pooling of the deepest feature map.")),
     Param("normalize", bool, typer.Option(False, "--normalize", help="L2-normalise each vector (cosine similarity = "
                                                                      "dot product).")),
     shared.batch_size(32),
     shared.overwrite("Allow --out to replace existing files."),
     shared.DEVICE,
     shared.workers("Image-decoding threads.")],
    embed))
