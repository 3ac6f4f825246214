"""Confusion-matrix based segmentation metrics: mIoU, pixel accuracy, Dice."""
from __future__ import annotations

import math
from typing import Any, Callable

import torch


class ConfusionMatrix:
    """Accumulates ``mat[target, pred]`` (int64, rows = ground truth).

    Everything derives from one ``num_classes × num_classes`` tensor, so
    distributed evaluation only has to sum it: ``cm.reduce(dist.all_reduce)``
    (``fn`` may modify ``mat`` in place or return a new tensor), or
    ``cm.merge(other)`` for matrices gathered by hand.
    """

    def __init__(
        self, num_classes: int, ignore_index: int = 255, device: str | torch.device = "cpu"
    ) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def reset(self) -> None:
        self.mat.zero_()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``pred`` and ``target`` are class indices ``[N, H, W]``."""
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        k = self.num_classes
        pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
        valid = target != self.ignore_index
        pred, target = pred[valid], target[valid]
        if target.numel() == 0:
            return
        # An index outside [0, k) would land in another cell of the flattened matrix.
        for name, t in (("target", target), ("pred", pred)):
            lo, hi = int(t.min()), int(t.max())
            if lo < 0 or hi >= k:
                raise ValueError(f"{name} holds class {hi if hi >= k else lo}, outside [0, {k})")
        counts = torch.bincount(target * k + pred, minlength=k * k).reshape(k, k)
        self.mat += counts.to(self.mat.device)

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        if other.num_classes != self.num_classes:
            raise ValueError("cannot merge confusion matrices of different sizes")
        self.mat += other.mat.to(self.mat.device)
        return self

    def reduce(self, fn: Callable[[torch.Tensor], Any]) -> "ConfusionMatrix":
        result = fn(self.mat)
        if isinstance(result, torch.Tensor):
            self.mat = result
        return self

    def compute(self) -> dict[str, Any]:
        """Metrics as plain Python numbers.

        A class absent from both prediction and target has no IoU/Dice (NaN in
        the per-class lists) and is left out of the means; otherwise a class
        missing from a small validation set would count as 0 or 1.
        """
        mat = self.mat.double().cpu()
        tp = mat.diag()
        gt = mat.sum(1)
        pred = mat.sum(0)
        union = gt + pred - tp
        nan = torch.tensor(math.nan, dtype=torch.float64)
        iou = torch.where(union > 0, tp / union.clamp(min=1), nan)
        dice = torch.where(gt + pred > 0, 2 * tp / (gt + pred).clamp(min=1), nan)
        total = mat.sum()

        def nanmean(t: torch.Tensor) -> float:
            return float(t.nanmean()) if (~t.isnan()).any() else math.nan

        return {
            "miou": nanmean(iou),
            "per_class_iou": iou.tolist(),
            "pixel_accuracy": float(tp.sum() / total) if total > 0 else math.nan,
            "mean_dice": nanmean(dice),
            "per_class_dice": dice.tolist(),
        }
