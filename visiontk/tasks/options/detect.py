"""`detect` command options and help texts."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional

from visiontk.tasks.options.fields import option
from visiontk.tasks.options.spec import CommandSpec


class DetectFormat(str, Enum):
    jsonl = "jsonl"
    coco = "coco"
    yolo = "yolo"


CONF_HELP = "Score threshold (class probability x box confidence)"


# Predict and eval share the NMS settings; a function, because a dataclass
# field object belongs to one class.
def _iou_option():
    return option(None, "NMS IoU threshold (default from the checkpoint: 0.5).", flags=("--iou",), min=0.0, max=1.0,
                  from_checkpoint="iou")


def _max_det_option():
    return option(None, "Most detections kept per image (default from the checkpoint: 100).", flags=("--max-det",),
                  min=1, from_checkpoint="max_det")


@dataclass(frozen=True)
class DetectPredictOptions:
    conf: Optional[float] = option(None, f"{CONF_HELP} (default from the checkpoint: 0.25).", flags=("--conf",),
                                   min=0.0, max=1.0, from_checkpoint="conf")
    iou: Optional[float] = _iou_option()
    max_det: Optional[int] = _max_det_option()
    # None: chosen by --out's name (tasks/detect/writers.py OUT_SUFFIXES), jsonl for stdout.
    format: Optional[DetectFormat] = option(None, "jsonl (one line per image), coco (a COCO results json) or yolo (a "
                                                  "txt per image into --out DIR). Default: coco when --out ends in "
                                                  ".json, else jsonl.", flags=("--format",))
    save_images: Optional[str] = option(None, "Also write each image with its boxes drawn into this folder.",
                                        flags=("--save-images",))
    coco_images_from: Optional[str] = option(
        None, "--format coco: take each image's image_id from this COCO annotation file, matching its 'file_name' "
              "(the image's path, or its last parts, e.g. val/x.jpg or x.jpg). Without it, or for an image not in "
              "the file: its id in the COCO set the model was trained on when it is in one of that set's image "
              "folders (the checkpoint's recipe), else the numeric file name (000000139.jpg -> 139), else (with a "
              "warning) the image's 1-based position in the input. category_id is the COCO category id the model was trained with (its checkpoint keeps them), "
              "else the class index + 1.", flags=("--coco-images-from",))


@dataclass(frozen=True)
class DetectEvalOptions:
    # Evaluation keeps almost every box (the checkpoint's eval_conf, 0.001):
    # mAP integrates over the whole precision-recall curve.
    conf: Optional[float] = option(None, f"{CONF_HELP} (default 0.001: mAP needs the whole precision-recall curve).",
                                   flags=("--conf",), min=0.0, max=1.0, from_checkpoint="eval_conf")
    iou: Optional[float] = _iou_option()
    max_det: Optional[int] = _max_det_option()


COMMANDS = CommandSpec(
    name="detect",
    help="Object detection (YOLO-v1).",
    train_help="Train a detector from a recipe.",
    eval_help="COCO mAP@[.5:.95], mAP@.5, mAP@.75 and per-class AP@.5 on a split (pycocotools).",
    predict_help="Detect objects; boxes in pixel xyxy of the original image, with scores and labels.",
    split_help="Split to evaluate (train, val, or a split name of the data set).",
    plots_help="Where the PR curve PNG goes (default: next to the checkpoint).",
    eval_batch_size=32,
    predict_batch_size=32,
    out_help="Output file (jsonl, coco; default stdout) or folder (yolo).",
    overwrite_help="Allow --out / --save-images to replace existing files.",
    predict_options=DetectPredictOptions,
    eval_options=DetectEvalOptions,
)
