"""Pieces every task's commands share: error handling, train, eval, predict plumbing."""
from __future__ import annotations

import functools
import json
import sys
import traceback
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.markup import escape

from visiontk.console import err_console, info
from visiontk.errors import JobError, VisionTKError, worker_message

STATE = {"debug": False}


def fail(message: str, code: int) -> None:
    # One line whatever the message holds (a wrapped worker error, a multi-line
    # library message): scripts grep it and humans read it at a glance.
    message = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
    err_console.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def handle_errors(fn: Callable) -> Callable:
    """Turn library errors into one line on stderr and an exit code; tracebacks only with --debug."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except VisionTKError as e:
            if STATE["debug"]:
                traceback.print_exc()
            fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except BrokenPipeError:
            # A consumer such as `head` closed the pipe: stop quietly.
            sys.stderr.close()
            raise typer.Exit(0)
        except Exception as e:  # noqa: BLE001 - the last resort must catch everything
            if STATE["debug"]:
                traceback.print_exc()
            fail(f"unexpected {e.__class__.__name__}: {worker_message(str(e), type(e))} (run with --debug for the traceback)", 1)

    return wrapper


SetOpt = typer.Option(None, "--set", help="Override a recipe key, e.g. --set train.lr=0.01 (value parsed as YAML).")
DeviceOpt = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps")
PrecisionOpt = typer.Option("auto", "--precision",
                            help="auto | fp32 | bf16 | fp16. auto: fp32 on the CPU, bf16 (or fp16) on CUDA; "
                                 "bf16 is ~2x faster on CPUs with AVX-512 BF16 or AMX.")
CompileOpt = typer.Option(False, "--compile", help="torch.compile the model: slow start, faster on long runs.")
LoaderOpt = typer.Option("auto", "--loader",
                         help="Who decodes images: auto (threads on the CPU, worker processes with a GPU) | threads | "
                              "processes (on the CPU, faster for small models, slower for large ones).")
TrainPrecisionOpt = typer.Option(None, "--precision",
                                 help="fp32 | bf16 | fp16 | auto: sets train.amp (default: the recipe's; auto: "
                                      "mixed precision on CUDA, fp32 on the CPU; bf16 trains ~2x faster on CPUs "
                                      "with AVX-512 BF16 or AMX).")
TrainCompileOpt = typer.Option(False, "--compile", help="torch.compile the model (sets train.compile): slow start, "
                                                        "faster steps on long runs.")


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


def run_train(task: str, recipe: str, overrides: Optional[list[str]], device: str, project: Optional[str],
              name: Optional[str], resume: Optional[str], precision: Optional[str] = None,
              compile: bool = False) -> dict:
    from visiontk.engine.trainer import Trainer
    from visiontk.errors import UserError
    from visiontk.tasks.recipes import load_recipe

    r = load_recipe(recipe, [*(overrides or []), *speed_overrides(precision, compile)])
    if r.task != task:
        raise UserError(f"{recipe}: recipe is for task '{r.task}', not '{task}' (use 'visiontk {r.task} train')")
    result = Trainer(r, device=device, project=project, name=name, resume=resume).fit()
    run_dir = Path(result["run_dir"])
    if (run_dir / "best.pt").exists():
        info(f"done: best fitness {result['best_fitness']:.4f} at epoch {result['best_epoch']}")
        info(f"outputs in {run_dir}/ (best.pt, last.pt, results.csv, recipe.yaml, plots/)")
    return result


def run_eval(task_name: str, checkpoint: str, data: Optional[str], split: str, as_json: bool, device: str,
             batch_size: int, plots_dir: Optional[str], options: dict | None = None) -> dict:
    from visiontk.engine.evaluator import evaluate_checkpoint
    from visiontk.tasks.registry import get_task

    task = get_task(task_name)
    metrics, ckpt = evaluate_checkpoint(checkpoint, task_name, data, split, device, batch_size, options=options)
    classes = ckpt["classes"]
    out_dir = Path(plots_dir) if plots_dir else Path(checkpoint).parent / "plots"
    written = task.write_eval_plots(metrics, classes, out_dir, suffix=f"_{split}")
    if as_json:
        sys.stdout.write(json.dumps({"checkpoint": str(checkpoint), "split": split, "classes": classes, **metrics}) + "\n")
    else:
        task.print_metrics(metrics, classes)
    for p in written:
        info(f"wrote {p}")
    return metrics


def run_predict(task_name: str, checkpoint: str, sources: list[str], writer_factory, out: Optional[str],
                overwrite: bool, device: str, batch_size: int, workers: int, options: dict, precision: str = "auto",
                compile: bool = False, loader: str = "auto") -> None:
    from visiontk.data.sources import iter_sources
    from visiontk.engine.predictor import Predictor
    from visiontk.engine.writers import open_output, refuse_output_inputs
    from visiontk.errors import UserError

    predictor = Predictor(checkpoint, task_name, device=device, batch_size=batch_size, workers=workers, options=options,
                          precision=precision, compile=compile, loader=loader)
    # Writers that put files in a folder (segment's mask saver) name it `out_dir`.
    out_dirs = [Path(v.out_dir) for v in options.values() if isinstance(getattr(v, "out_dir", None), (str, Path))]
    paths = refuse_output_inputs(iter_sources(sources), out, out_dirs, sources)
    with open_output(out, overwrite) as stream:
        writer = writer_factory(stream)
        stats = predictor.run(paths, writer, flush=stream.flush)
        if hasattr(writer, "close"):
            writer.close()
    if stats["images"] == 0:
        # Nothing was predicted: an empty folder, a pattern or list matching nothing.
        raise UserError(f"no images to predict in {', '.join(sources)}")
    if stats["errors"]:
        raise JobError(f"{stats['errors']} of {stats['images']} images could not be read")
    info(f"predicted {stats['images']} images")
