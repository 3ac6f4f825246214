"""The parameters several commands share, each defined once."""
from __future__ import annotations

from typing import List, Optional

import typer

from visiontk.commands.signature import Param

# -- train ------------------------------------------------------------------
RECIPE_HELP = "Recipe YAML file or shipped recipe name (see 'visiontk recipes list')."
RESUME_HELP = "Continue a run from its last.pt (or run folder)."


def recipe(help: str = RECIPE_HELP) -> Param:
    return Param("recipe", str, typer.Argument(..., help=help))


SET = Param("set", Optional[List[str]], typer.Option(
    None, "--set", help="Override a recipe key, e.g. --set train.lr=0.01 (value parsed as YAML)."))
TRAIN_PRECISION = Param("precision", Optional[str], typer.Option(
    None, "--precision", help="fp32 | bf16 | fp16 | auto: sets train.amp (default: the recipe's; auto: mixed precision "
                              "on CUDA, fp32 on the CPU; bf16 trains ~2x faster on CPUs with AMX, is slower on AVX2 CPUs)."))
TRAIN_COMPILE = Param("compile", bool, typer.Option(
    False, "--compile", help="torch.compile the model (sets train.compile): slow start, faster steps on long runs."))
PROJECT = Param("project", Optional[str], typer.Option(
    None, help="Runs folder (default: the recipe's output.project, 'runs')."))
NAME = Param("name", Optional[str], typer.Option(
    None, help="Run name (default: the recipe's name; -2, -3... when taken)."))


def resume(help: str = RESUME_HELP) -> Param:
    return Param("resume", Optional[str], typer.Option(None, help=help))


# -- eval and predict -------------------------------------------------------
def checkpoint(task: str, exported: bool = False) -> Param:
    more = " or a .onnx / .xml file of 'visiontk export' (with its .json)" if exported else ""
    return Param("checkpoint", str, typer.Argument(..., help=f"A {task} checkpoint (best.pt){more}."))


DATA = Param("data", Optional[str], typer.Argument(
    None, help="Data root (default: the one in the checkpoint's recipe)."))
def split(help: str) -> Param:
    return Param("split", str, typer.Option("val", help=help))


JSON = Param("json_out", bool, typer.Option(
    False, "--json", help="Print one JSON object on stdout instead of tables."))


def plots_dir(help: str) -> Param:
    return Param("plots_dir", Optional[str], typer.Option(None, help=help))


SOURCES = Param("sources", List[str], typer.Argument(
    ..., help="Image files, folders, globs, or - to read paths from stdin."))


def out(help: str) -> Param:
    return Param("out", Optional[str], typer.Option(None, help=help))


def overwrite(help: str) -> Param:
    return Param("overwrite", bool, typer.Option(False, help=help))


def batch_size(default: int, help: str | None = None) -> Param:
    return Param("batch_size", int, typer.Option(default, min=1, help=help))


def workers(help: str = "Image-decoding workers (threads on the CPU, processes with a GPU).") -> Param:
    return Param("workers", int, typer.Option(2, min=0, help=help))


DEVICE = Param("device", str, typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps"))
PRECISION = Param("precision", str, typer.Option(
    "auto", "--precision", help="auto | fp32 | bf16 | fp16. auto: on the CPU, fp32 and bf16 are timed on a few batches "
                                "of this model (once; the choice is cached) and the faster runs; bf16 autocast on CUDA "
                                "(fp16 where the GPU lacks bf16). bf16 pays on CPUs with AMX (~1.8x), barely or not at "
                                "all with AVX-512 BF16 alone, and is several times slower on AVX2 CPUs."))
BACKEND = Param("backend", Optional[str], typer.Option(
    None, "--backend", help="torch | onnxruntime | openvino | auto: what runs the model's forward pass (pre- and "
                            "post-processing stay visiontk's). onnxruntime and openvino run on the CPU the model "
                            "exported to ONNX on first use (cached); auto times them against torch on this model "
                            "and runs the fastest. --cam and --compile need torch. Default: torch; for a .onnx or "
                            ".xml file of 'visiontk export' given as the model, onnxruntime or openvino."))
COMPILE = Param("compile", bool, typer.Option(
    False, "--compile", help="torch.compile the model: slow start, faster on long runs."))
LOADER = Param("loader", str, typer.Option(
    "auto", "--loader", help="Who decodes images: auto (with a GPU, worker processes; on the CPU, threads, "
                             "taking turns with the model or ahead of it, whichever the run's first batches "
                             "measure faster) | threads (taking turns) | pipeline (ahead of the model, which "
                             "runs on the cores they leave) | processes."))
SHARD = Param("shard", Optional[str], typer.Option(
    None, "--shard", help="I/N: predict only images I, I+N, I+2N... of the input (0 <= I < N), for job arrays and "
                          "xargs/parallel; merge the N outputs with 'visiontk merge'. Under torchrun the ranks "
                          "split the input (or this shard of it) without this option."))
