"""Segmentation scores from one confusion matrix over the split: mIoU, pixel accuracy, Dice."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from visiontk.metrics.base import sum_across_ranks
from visiontk.metrics.confusion import ConfusionMatrix
from visiontk.metrics.report import Report


def _clean(value: float) -> float | None:
    """NaN (a class absent from both prediction and truth) becomes null in JSON."""
    return None if value is None or math.isnan(value) else value


class SegmentationMetric:
    """Updated with label maps and masks: either two ``[N, H, W]`` tensors, or two
    lists with one ``[H, W]`` tensor per image, each image at its own size (an
    image's prediction and mask must match; images may differ from each other)."""

    def __init__(self, classes: Sequence[str], ignore_index: int, scored_at: str = "input_size"):
        self.classes = list(classes)
        self.scored_at = scored_at  # "input_size" or "image_size": reported, so a reader knows which
        self.confusion = ConfusionMatrix(len(self.classes), ignore_index)
        self.images = torch.zeros((), dtype=torch.int64)

    def reset(self) -> None:
        self.confusion.reset()
        self.images.zero_()

    def update(self, labels: torch.Tensor | Sequence[torch.Tensor], masks: torch.Tensor | Sequence[torch.Tensor]) -> None:
        if torch.is_tensor(labels) and torch.is_tensor(masks):
            self.confusion.update(labels, masks)
        else:
            if len(labels) != len(masks):
                raise ValueError(f"{len(labels)} predictions for {len(masks)} masks")
            for one, mask in zip(labels, masks):
                self.confusion.update(one, mask)
        self.images += len(labels)

    def sync(self, group: Any = None) -> None:
        self.confusion.sync(group)
        self.images = sum_across_ranks(self.images, group)

    def compute(self) -> dict:
        m = self.confusion.compute()
        return {
            "miou": m["miou"],
            "pixel_accuracy": m["accuracy"],
            "mean_dice": m["mean_dice"],
            "iou": {name: _clean(v) for name, v in zip(self.classes, m["per_class_iou"])},
            "dice": {name: _clean(v) for name, v in zip(self.classes, m["per_class_dice"])},
            "images": int(self.images),
            "pixels": m["total"],
            "confusion_matrix": self.confusion.mat.tolist(),
            "scored_at": self.scored_at,
            "fitness": m["miou"],
        }


def segmentation_report(metrics: dict, classes: list[str]) -> Report:
    mat = np.asarray(metrics["confusion_matrix"], dtype=np.float64)
    truth = mat.sum(1) / max(mat.sum(), 1)  # each class's share of the scored pixels
    where = {"image_size": "at each image's own size", "input_size": "at the model's input size"}
    scored_at = metrics.get("scored_at", "input_size")
    return Report(
        f"segmentation (scored {where.get(scored_at, scored_at)})",
        {"images": metrics["images"], "pixels": metrics["pixels"], "mIoU": metrics["miou"],
         "pixel acc.": metrics["pixel_accuracy"], "mean Dice": metrics["mean_dice"]},
        [{"class": name, "IoU": metrics["iou"].get(name), "Dice": metrics["dice"].get(name),
          "pixel share": float(truth[i])} for i, name in enumerate(classes)],
    )
