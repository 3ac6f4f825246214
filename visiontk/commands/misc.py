"""`visiontk recipes|backbones|data` commands."""
from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from visiontk.commands.errors import handle_errors
from visiontk.console import out_console, print_table
from visiontk.outputs.json_text import dumps

recipes_app = typer.Typer(help="Shipped recipes.", no_args_is_help=True)
backbones_app = typer.Typer(help="Shared CNN backbones.", no_args_is_help=True)
data_app = typer.Typer(help="Data sets.", no_args_is_help=True)


@recipes_app.command("list")
@handle_errors
def recipes_list():
    """List the shipped recipes."""
    from visiontk.recipe import RECIPES_DIR, list_recipes, read_yaml

    table = Table(show_header=True)
    for col in ("recipe", "task", "backbone", "file"):
        table.add_column(col)
    for path in list_recipes():
        raw = read_yaml(path) or {}
        model = raw.get("model") or {}
        name = str(path.relative_to(RECIPES_DIR).with_suffix(""))
        table.add_row(name, str(raw.get("task", "?")), str(model.get("backbone", "tinycnn")), str(path))
    print_table(table, out_console)


@recipes_app.command("show")
@handle_errors
def recipes_show(
    recipe: str = typer.Argument(..., help="Shipped recipe name (e.g. classify/shapes) or YAML path."),
    set: Optional[list[str]] = typer.Option(None, "--set", help="Overrides to apply, as in train."),
):
    """Print the resolved recipe (defaults filled in, overrides applied) as YAML."""
    from visiontk.recipe import dump_recipe
    from visiontk.tasks.recipes import load_recipe

    sys.stdout.write(dump_recipe(load_recipe(recipe, set or [])))


@backbones_app.command("list")
@handle_errors
def backbones_list(json_out: bool = typer.Option(False, "--json", help="One JSON object per backbone on stdout.")):
    """Name, parameters, output strides and channels, receptive field of the last feature map, ImageNet weights."""
    import torch

    from visiontk.backbones.receptive_field import format_size, output_fields, probe_input
    from visiontk.backbones.registry import backbone_names, create_backbone, get_backbone_spec

    rows = []
    for name in backbone_names():
        spec = get_backbone_spec(name)
        # On the meta device: shapes and parameter counts without initialising weights.
        with torch.device("meta"):
            b = create_backbone(name)
            try:
                rf = output_fields(b.eval(), probe_input(b, 224))[-1]
            except RuntimeError:  # a fixed input length (the mlp's 40 samples): no field at 224
                rf = None
        rows.append({
            "name": name,
            "params": sum(p.numel() for p in b.parameters()),
            "strides": b.strides,
            "channels": b.out_channels,
            "receptive_field": format_size(rf),
            "imagenet": spec.has_imagenet_weights,
            "description": spec.description,
        })
    if json_out:
        for r in rows:
            sys.stdout.write(dumps(r) + "\n")
        return
    table = Table(show_header=True, caption="RF: receptive field of the last feature map at 224 px (224 samples for 1-D backbones), in pixels or samples "
                                            "(global: a global pooling inside, e.g. squeeze-and-excitation)")
    for col in ("backbone", "params", "strides", "channels", "RF", "ImageNet weights", "description"):
        table.add_column(col, justify="right" if col in ("params", "RF") else "left")
    for r in rows:
        table.add_row(r["name"], f"{r['params'] / 1e6:.2f} M", str(r["strides"]), str(r["channels"]),
                      r["receptive_field"], "yes" if r["imagenet"] else "no",
                      escape(r["description"]))  # 'visiontk[lite0]' is no markup
    print_table(table, out_console)


@backbones_app.command("show")
@handle_errors
def backbones_show(
    name: str = typer.Argument(..., help="A backbone name (see 'visiontk backbones list')."),
    image_size: int = typer.Option(224, "--image-size", min=8, max=8192, help="Input side in pixels."),
    depth: Optional[int] = typer.Option(None, "--depth", min=1, help="Rows for the modules down to this depth "
                                        "(blocks) instead of one per layer; depth = dots in the name + 1."),
    batch: int = typer.Option(32, "--batch", min=1, help="Batch size of the forward+backward memory estimate."),
    json_out: bool = typer.Option(False, "--json", help="One JSON document (layers and totals) on stdout."),
):
    """Per layer: output shape, parameters, mult-adds, stride, receptive field (size, jump, start); totals and memory."""
    from visiontk.commands.summary_view import print_summary
    from visiontk.engine.summary import summarize_backbone

    print_summary(summarize_backbone(name, image_size, depth, batch), name, json_out)


class SynthTask(str, Enum):
    classify = "classify"
    detect = "detect"
    segment = "segment"
    signals = "signals"
    text = "text"


@data_app.command("synth")
@handle_errors
def data_synth(
    task: SynthTask = typer.Option(..., help="classify (ImageFolder), detect (COCO json + YOLO txt), segment (image + "
                                             "mask PNG), signals (MNIST-1D, train.npz + val.npz) or text (sentences "
                                             "whose label depends on word order, train.tsv + val.tsv)."),
    out: Path = typer.Option(..., help="Output folder."),
    n: Optional[int] = typer.Option(None, help="Number of images, signals or sentences (train + val)."),
    size: Optional[int] = typer.Option(None, help="Image side in pixels (images only)."),
    seed: Optional[int] = typer.Option(None, help="Generator seed (default 0; MNIST-1D's 42 for signals)."),
):
    """Write a deterministic synthetic data set in real on-disk formats."""
    from visiontk.data import synth
    from visiontk.errors import UserError

    if task.value in ("signals", "text"):
        from visiontk.data.synth_signals import synth_signals
        from visiontk.data.synth_text import synth_text

        if size is not None:
            raise UserError(f"--size: is for images, not --task {task.value}")
        fn = {"signals": synth_signals, "text": synth_text}[task.value]
    else:
        fn = {"classify": synth.synth_classify, "detect": synth.synth_detect, "segment": synth.synth_segment}[task.value]
    kwargs = {} if seed is None else {"seed": seed}
    if n is not None:
        kwargs["n"] = n
    if size is not None:
        kwargs["size"] = size
    summary = fn(out, **kwargs)
    sys.stdout.write(dumps(summary) + "\n")


# `data check` / `data stats` live in their own module (commands/data_check.py).
from visiontk.commands import data_check  # noqa: E402

data_app.command("check")(data_check.check)
data_app.command("stats")(data_check.stats)
