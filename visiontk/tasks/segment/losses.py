"""Segmentation losses: cross-entropy, soft Dice, or both."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from visiontk.console import plural
from visiontk.errors import UserError

KINDS = ("ce", "dice", "ce+dice")


def soft_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255, smooth: float = 1.0
) -> torch.Tensor:
    """``1 - mean_c Dice_c`` between softmax probabilities and one-hot targets.

    Sums run over the whole batch (one Dice per class per batch, which is
    stabler than per image on small objects). Ignored pixels are removed from
    both probabilities and targets. The mean is over the classes present in
    the (non-ignored) target: an absent class would otherwise score
    ``smooth/(sum p + smooth)``, pushing the loss around for classes that are
    not there. With no valid pixel the loss is 0 (still attached to the graph).
    """
    num_classes = logits.shape[1]
    valid = target != ignore_index
    if not valid.any():
        return logits.sum() * 0.0
    probs = logits.float().softmax(dim=1) * valid.unsqueeze(1)
    # Ignored pixels get class 0 in one_hot, then are zeroed by `valid`.
    onehot = F.one_hot(torch.where(valid, target, 0), num_classes).permute(0, 3, 1, 2)
    onehot = onehot.to(probs.dtype) * valid.unsqueeze(1)
    dims = (0, 2, 3)
    intersection = (probs * onehot).sum(dims)
    cardinality = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * intersection + smooth) / (cardinality + smooth)
    present = onehot.sum(dims) > 0
    return 1.0 - dice[present].mean()


class SegmentationLoss(nn.Module):
    """``kind`` = 'ce' | 'dice' | 'ce+dice'; ``forward`` returns ``(loss, components)``.

    ``components`` maps 'ce' / 'dice' / 'loss' to Python floats for logging.
    ``class_weights`` weight the cross-entropy only (Dice already balances
    classes by averaging per class). ``dice_weight`` scales the Dice term in
    'ce+dice'.
    """

    def __init__(
        self,
        kind: str = "ce",
        ignore_index: int = 255,
        class_weights: list[float] | None = None,
        dice_weight: float = 1.0,
        smooth: float = 1.0,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise UserError(f"segmentation loss must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.ignore_index = ignore_index
        self.dice_weight = dice_weight
        self.smooth = smooth
        weight = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        # a buffer follows .to(device) with the model
        self.register_buffer("class_weights", weight, persistent=False)

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        if self.class_weights is not None and self.class_weights.numel() != logits.shape[1]:
            raise UserError(
                f"class_weights has {plural(self.class_weights.numel(), 'entry')} for "
                f"{plural(logits.shape[1], 'class')}"
            )
        target = target.long()
        parts: dict[str, torch.Tensor] = {}
        if self.kind in ("ce", "ce+dice"):
            ce = F.cross_entropy(logits.float(), target, weight=self.class_weights, ignore_index=self.ignore_index)
            # A mean over zero pixels is 0/0: an all-ignored batch gets 0 (still in the graph).
            # The mask is searched only when the mean came out NaN, not on every step (a full
            # extra pass over it; ~1 ms of a tinycnn U-Net step on one thread). Logits gone
            # NaN on labelled pixels stay NaN, for the trainer's finite check.
            if torch.isnan(ce) and not (target != self.ignore_index).any():
                ce = logits.sum() * 0.0
            parts["ce"] = ce
        if self.kind in ("dice", "ce+dice"):
            parts["dice"] = soft_dice_loss(logits, target, self.ignore_index, self.smooth)
        if self.kind == "ce+dice":
            loss = parts["ce"] + self.dice_weight * parts["dice"]
        else:  # dice_weight only balances the two terms of 'ce+dice'
            loss = parts[self.kind]
        components = {name: float(value.detach()) for name, value in parts.items()}
        components["loss"] = float(loss.detach())
        return loss, components
