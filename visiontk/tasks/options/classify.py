"""`classify` command options and help texts."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional

from visiontk.tasks.options.fields import option
from visiontk.tasks.options.spec import CommandSpec


class ClassifyFormat(str, Enum):
    jsonl = "jsonl"
    csv = "csv"


@dataclass(frozen=True)
class ClassifyPredictOptions:
    topk: int = option(5, "How many classes to report per image.", min=1)
    # None: chosen by --out's name (tasks/classify.py OUT_SUFFIXES), jsonl for stdout.
    format: Optional[ClassifyFormat] = option(None, "jsonl or csv (default: csv when --out ends in .csv, else "
                                                    "jsonl).", flags=("--format",))
    cam: Optional[str] = option(None, "Write a Grad-CAM overlay of each image's top-1 class into this folder "
                                      "(<name>_cam.png, at the model's input size; the record gets cam, cam_class "
                                      "and cam_peak). A new or empty folder (--overwrite: may hold files), never a "
                                      "source folder.", flags=("--cam",))


COMMANDS = CommandSpec(
    name="classify",
    help="Image classification.",
    train_help="Train a classifier from a recipe.",
    eval_help="Top-1, top-5 and per-class precision/recall on a split.",
    predict_help="Classify images; one JSON line (or CSV row) per image on stdout.",
    split_help="Split folder under the data root.",
    plots_help="Where the confusion matrix PNG goes (default: next to the checkpoint).",
    eval_batch_size=64,
    predict_batch_size=32,
    out_help="Write results to this file instead of stdout.",
    overwrite_help="Allow --out to replace an existing file.",
    predict_options=ClassifyPredictOptions,
)
