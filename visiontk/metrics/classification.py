"""Top-1 / top-5 accuracy and per-class precision and recall over a whole split."""
from __future__ import annotations

from typing import Any

import torch

from visiontk.metrics.base import sum_across_ranks
from visiontk.metrics.confusion import ConfusionMatrix
from visiontk.metrics.report import Report


class ClassificationMetric:
    """Updated with ``(logits [N, C], labels [N])``."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.confusion = ConfusionMatrix(num_classes)
        self.top5_hits = torch.zeros((), dtype=torch.int64)

    def reset(self) -> None:
        self.confusion.reset()
        self.top5_hits.zero_()

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.confusion.update(logits.argmax(1), labels)
        k = min(5, self.num_classes)
        self.top5_hits += (logits.topk(k, 1).indices == labels[:, None].to(logits.device)).any(1).sum().cpu()

    def sync(self, group: Any = None) -> None:
        self.confusion.sync(group)
        self.top5_hits = sum_across_ranks(self.top5_hits, group)

    def compute(self) -> dict:
        cm = self.confusion.compute()
        count = cm["total"]
        n = max(count, 1)
        top1 = sum(self.confusion.mat.diag().tolist()) / n
        return {
            "top1": top1,
            "top5": int(self.top5_hits) / n,
            "fitness": top1,
            "count": count,
            "precision": cm["precision"],
            "recall": cm["recall"],
            "support": cm["support"],
            "confusion_matrix": self.confusion.mat.tolist(),
        }


def classification_report(metrics: dict, classes: list[str]) -> Report:
    return Report(
        "classification",
        {"images": metrics["count"], "top-1": metrics["top1"], "top-5": metrics["top5"]},
        [{"class": name, "images": metrics["support"][i], "precision": metrics["precision"][i],
          "recall": metrics["recall"][i]} for i, name in enumerate(classes)],
    )
