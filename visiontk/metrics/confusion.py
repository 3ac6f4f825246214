"""The confusion matrix classification and segmentation both score with.

Everything either task reports derives from one ``k x k`` count matrix, so
evaluation shared by several processes only has to sum it (`sync`).
"""
from __future__ import annotations

import math
from typing import Any

import torch

from visiontk.metrics.base import sum_across_ranks


class ConfusionMatrix:
    """Accumulates ``mat[truth, prediction]`` (int64 on the CPU, rows = ground truth).

    `ignore_index`: a truth value counted nowhere (segmentation's unlabelled
    pixels); None counts every value.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def reset(self) -> None:
        self.mat.zero_()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add class indices of any (equal) shape: ``[N]`` labels or ``[N, H, W]`` label maps."""
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        k = self.num_classes
        # Counted where the predictions are (the GPU for segmentation maps): only
        # the k x k counts travel to the CPU.
        pred, target = pred.reshape(-1).long(), target.reshape(-1).long().to(pred.device)
        if self.ignore_index is not None:
            valid = target != self.ignore_index
            pred, target = pred[valid], target[valid]
        if target.numel() == 0:
            return
        # An index outside [0, k) would land in another cell of the flattened matrix.
        for name, t in (("target", target), ("pred", pred)):
            lo, hi = int(t.min()), int(t.max())
            if lo < 0 or hi >= k:
                raise ValueError(f"{name} holds class {hi if hi >= k else lo}, outside [0, {k})")
        self.mat += torch.bincount(target * k + pred, minlength=k * k).reshape(k, k).cpu()

    def sync(self, group: Any = None) -> None:
        self.mat = sum_across_ranks(self.mat, group)

    def compute(self) -> dict[str, Any]:
        """Statistics of the matrix as plain Python numbers.

        precision / recall of a class never predicted / never present are 0 (as
        classification reports them). IoU and Dice of a class absent from both
        prediction and truth are NaN and left out of the means: otherwise a class
        missing from a small validation set would count as 0 or 1.
        """
        mat = self.mat.double()
        tp = mat.diag()
        truth = mat.sum(1)
        predicted = mat.sum(0)
        union = truth + predicted - tp
        nan = torch.tensor(math.nan, dtype=torch.float64)
        zero = torch.zeros_like(tp)
        iou = torch.where(union > 0, tp / union.clamp(min=1), nan)
        dice = torch.where(truth + predicted > 0, 2 * tp / (truth + predicted).clamp(min=1), nan)
        total = mat.sum()

        def nanmean(t: torch.Tensor) -> float:
            return float(t.nanmean()) if (~t.isnan()).any() else math.nan

        return {
            "total": int(self.mat.sum()),
            "accuracy": float(tp.sum() / total) if total > 0 else math.nan,
            "precision": torch.where(predicted > 0, tp / predicted.clamp(min=1), zero).tolist(),
            "recall": torch.where(truth > 0, tp / truth.clamp(min=1), zero).tolist(),
            "support": truth.long().tolist(),
            "per_class_iou": iou.tolist(),
            "miou": nanmean(iou),
            "per_class_dice": dice.tolist(),
            "mean_dice": nanmean(dice),
        }
