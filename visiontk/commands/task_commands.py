"""`train`, `eval` and `predict`, written once and built for every task of the registry.

A task contributes its help texts, default batch sizes and option dataclasses
(tasks/options/<task>.py); the parameters every task shares are in
shared_options.py. The bodies parse nothing themselves: they hand typed options
to the library (engine/) and print what it returns.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from visiontk.commands import shared_options as shared
from visiontk.commands.signature import build_command, option_params, take_options
from visiontk.console import info, plural
from visiontk.outputs.json_text import dumps
from visiontk.tasks.options.spec import CommandSpec


def speed_overrides(precision: Optional[str], compile: bool) -> list[str]:
    """The train command's speed flags as recipe overrides (after the user's --set:
    a flag given on the command line wins)."""
    from visiontk.engine.device import PRECISIONS
    from visiontk.errors import UserError

    out = []
    if precision is not None:
        if precision not in PRECISIONS:
            raise UserError(f"--precision: '{precision}' is not one of {', '.join(PRECISIONS)}")
        out.append(f"train.amp={precision}")
    if compile:
        out.append("train.compile=true")
    return out


def run_train(task: str, recipe: str, set: Optional[list[str]], device: str, precision: Optional[str],
              compile: bool, project: Optional[str], name: Optional[str], resume: Optional[str]) -> None:
    from visiontk.engine.distributed import launch_info, shutdown
    from visiontk.engine.trainer import Trainer
    from visiontk.errors import UserError
    from visiontk.tasks.recipes import load_recipe

    overrides = [*(set or []), *speed_overrides(precision, compile)]
    r = load_recipe(recipe, overrides)
    if r.task != task:
        raise UserError(f"{recipe}: recipe is for task '{r.task}', not '{task}' (use 'visiontk {r.task} train')")
    try:
        result = Trainer(r, device=device, project=project, name=name, resume=resume, overrides=overrides).fit()
    finally:
        # Under torchrun, a failure before fit's loop (a missing weights file, unreadable data)
        # skips the loop's own shutdown: the process group still ends before the interpreter's exit.
        shutdown()
    run_dir = Path(result["run_dir"])
    if launch_info()[1] == 0 and (run_dir / "best.pt").exists():  # under torchrun, rank 0 alone says it
        info(f"done: best fitness {result['best_fitness']:.4f} at epoch {result['best_epoch']}")
        # Only what this run wrote: plots/ is absent with output.plots false.
        names = ["best.pt", "last.pt", "results.csv", "per_class.csv", "recipe.yaml", "report.html", "plots"]
        made = [n + ("/" if (run_dir / n).is_dir() else "") for n in names if (run_dir / n).exists()]
        info(f"outputs in {run_dir}/ ({', '.join(made)})")


def train_params(recipe_help: str = shared.RECIPE_HELP, resume_help: str = shared.RESUME_HELP) -> list:
    return [shared.recipe(recipe_help), shared.SET, shared.DEVICE, shared.TRAIN_PRECISION, shared.TRAIN_COMPILE,
            shared.PROJECT, shared.NAME, shared.resume(resume_help)]


def run_eval(task_name: str, options: object, checkpoint: str, data: Optional[str], split: str, json_out: bool,
             device: str, batch_size: int, plots_dir: Optional[str]) -> None:
    from visiontk.engine.distributed import launch_info
    from visiontk.engine.evaluator import evaluate_checkpoint
    from visiontk.errors import UserError
    from visiontk.metrics.report import print_report
    from visiontk.outputs.output_folder import refuse_inside_data, split_folders
    from visiontk.tasks.registry import get_task

    task = get_task(task_name)
    out_dir = Path(plots_dir) if plots_dir else Path(checkpoint).parent / "plots"

    def check_plots_dir(ckpt: dict, data_root: str) -> None:
        # Before any image is read: a plots folder that cannot be one, or that lies in the data set.
        if out_dir.exists() and not out_dir.is_dir():
            raise UserError(f"{out_dir}: is a file, not a folder (--plots-dir)")
        recipe = ckpt["recipe_obj"]
        split_name = {"train": recipe.data.train, "val": recipe.data.val}.get(split, split)
        refuse_inside_data(out_dir, split_folders(data_root, split_name), "--plots-dir")

    metrics, ckpt = evaluate_checkpoint(checkpoint, task_name, data, split, device, batch_size, options=options,
                                        before_work=check_plots_dir)
    if launch_info()[1] != 0:
        return  # under torchrun every rank has the whole split's metrics; rank 0 prints and writes them
    classes = ckpt["classes"]
    written = task.eval_plots(metrics, classes, out_dir, suffix=f"_{split}")
    if json_out:
        sys.stdout.write(dumps({"checkpoint": str(checkpoint), "split": split, "classes": classes, **metrics}) + "\n")
    else:
        print_report(task.report(metrics, classes))
    for p in written:
        info(f"wrote {p}")


def run_predict(task_name: str, options: object, checkpoint: str, sources: list[str], batch_size: int, device: str,
                workers: int, precision: str, compile: bool, loader: str, out: Optional[str] = None,
                overwrite: bool = False, shard: Optional[str] = None, backend: Optional[str] = None) -> None:
    from visiontk.data.modality import input_noun
    from visiontk.engine import distributed, sharding
    from visiontk.engine.predictor import Predictor
    from visiontk.errors import UserError
    from visiontk.outputs.output_file import OutputFile
    from visiontk.tasks.registry import get_task

    part = sharding.Shard.parse(shard) if shard is not None else None

    def plan():
        # Every output is checked against the inputs known now (SOURCE files and folders, the
        # checkpoint) before the checkpoint is loaded; stdin paths as they stream.
        outputs = get_task(task_name).prediction_outputs(options, OutputFile(out, overwrite))
        outputs.refuse_inputs(sources, checkpoint)
        return outputs

    def predictor_on(dev: str) -> Predictor:
        return Predictor(checkpoint, task_name, device=dev, batch_size=batch_size, workers=workers, options=options,
                         precision=precision, compile=compile, loader=loader, backend=backend)

    # One process, a --shard of the input, or torchrun's ranks (engine/sharding.py).
    stats, predictor = sharding.predict_sources(plan, predictor_on, sources, device, part)
    if stats is None:
        return  # a rank of torchrun's other than 0: rank 0 wrote the records and reports
    world = distributed.launch_info()[0]
    if stats["images"] == 0 and not stats.get("inputs"):
        # Nothing was predicted: an empty folder, a pattern or list matching nothing.
        raise UserError(f"no {predictor.preprocess.sources.noun} to predict in {', '.join(sources)}")
    noun = input_noun(predictor.preprocess.kind)  # "image", "signal", "text"
    fail_on_unreadable(stats, noun)
    info(f"predicted {plural(stats['images'], noun)}"
         + (f" on {world} processes" if world > 1 else f" (shard {part} of {stats['inputs']})" if part else "")
         + f"; {predictor.describe()}")


def fail_on_unreadable(stats: dict, noun: str = "image") -> None:
    """Exit 1 when some inputs could not be read (each has been warned about and has an error record)."""
    from visiontk.errors import JobError

    if stats["errors"]:
        raise JobError(f"{stats['errors']} of {plural(stats['images'], noun)} could not be read")


def task_app(spec: CommandSpec) -> typer.Typer:
    """The `visiontk <task>` group: train, eval and predict with the task's options."""
    app = typer.Typer(help=spec.help, no_args_is_help=True)

    def train(**values) -> None:
        run_train(spec.name, **values)

    def eval_(**values) -> None:
        run_eval(spec.name, take_options(spec.eval_options, values), **values)

    def predict(**values) -> None:
        run_predict(spec.name, take_options(spec.predict_options, values), **values)

    eval_params = [shared.checkpoint(spec.name), shared.DATA, shared.split(spec.split_help), shared.JSON,
                   *option_params(spec.eval_options), shared.DEVICE, shared.batch_size(spec.eval_batch_size),
                   shared.plots_dir(spec.plots_help)]
    # A task without a results file (segment) has no --out / --overwrite.
    out_params = [] if spec.out_help is None else [shared.out(spec.out_help), shared.overwrite(spec.overwrite_help)]
    predict_params = [shared.checkpoint(spec.name, exported=True), shared.SOURCES, *option_params(spec.predict_options), *out_params,
                      shared.batch_size(spec.predict_batch_size, spec.predict_batch_help), shared.DEVICE,
                      shared.workers(), shared.PRECISION, shared.BACKEND, shared.COMPILE, shared.LOADER,
                      shared.SHARD]
    app.command("train")(build_command(spec.train_help, train_params(), train))
    app.command("eval")(build_command(spec.eval_help, eval_params, eval_))
    app.command("predict")(build_command(spec.predict_help, predict_params, predict))
    return app
