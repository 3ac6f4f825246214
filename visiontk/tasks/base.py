"""What a task plugs into the shared recipe loader, trainer and predictor.

A task owns only what is truly its own: its head, loss, data adapters,
metrics and predict-time post-processing. Everything else (recipes, devices,
checkpoints, resume, DDP, progress, the streaming predictor) is shared.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from visiontk.backbones.base import Backbone


@dataclass
class NoOptions:
    pass


class TaskModel(nn.Module):
    """A shared backbone feeding a task head."""

    # True when the head leaves some backbone parameters out of the output
    # (e.g. it reads a middle feature map): the trainer tells DDP to expect it.
    has_unused_parameters: bool = False

    def __init__(self, backbone: Backbone, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> Any:
        return self.head(self.backbone(x))


class Task:
    name: str = ""
    head_schema: type = NoOptions
    loss_schema: type = NoOptions
    # Predict-time options (thresholds etc.) whose defaults travel in the checkpoint.
    predict_defaults: dict = {}

    def validate_recipe(self, recipe, source: str) -> None:
        """Cross-field checks beyond the schema; raise UserError naming the key."""

    # -- data ---------------------------------------------------------------
    def prepare_data(self, recipe) -> None:
        """Make sure the data exists (e.g. generate the synthetic set)."""

    def build_dataset(self, recipe, split: str, train: bool, classes: list[str] | None = None, root: str | None = None,
                      preprocess=None):
        """Return (dataset, class_names) for a split. `preprocess` (data/preprocess.py)
        turns its files into inputs: a checkpoint's for evaluation; default: the recipe's."""
        raise NotImplementedError

    def eval_dataset(self, recipe, split: str, classes: list[str], root: str | None, preprocess, options: dict):
        """The dataset `eval` scores (options: the command's, e.g. segment's `at`)."""
        return self.build_dataset(recipe, split, train=False, classes=classes, root=root, preprocess=preprocess)

    def collate(self, batch: list) -> tuple[torch.Tensor, Any] | None:
        """Stack a batch; samples a dataset skipped (None: unreadable image) are
        left out, and a batch with nothing left is None (the loops skip it)."""
        kept = [b for b in batch if b is not None]
        return torch.utils.data.default_collate(kept) if kept else None

    def targets_to(self, targets: Any, device: torch.device) -> Any:
        return targets.to(device, non_blocking=True) if torch.is_tensor(targets) else targets

    # -- model --------------------------------------------------------------
    def build_head(self, recipe, backbone: Backbone, num_classes: int) -> nn.Module:
        raise NotImplementedError

    def build_model(self, recipe, backbone: Backbone, num_classes: int) -> nn.Module:
        return TaskModel(backbone, self.build_head(recipe, backbone, num_classes))

    def build_loss(self, recipe, num_classes: int):
        """A callable (outputs, targets) -> (loss tensor, {name: float})."""
        raise NotImplementedError

    # -- evaluation ---------------------------------------------------------
    def evaluate(self, model: nn.Module, loader, device: torch.device, classes: list[str], options: dict | None = None) -> dict:
        """Metrics over a split. Must hold 'fitness' (higher is better) for best.pt."""
        raise NotImplementedError

    def metric_scalars(self, metrics: dict) -> dict:
        """The scalar metrics that go into results.csv."""
        return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}

    def write_eval_plots(self, metrics: dict, classes: list[str], plots_dir: Path, suffix: str = "") -> list[Path]:
        return []

    def print_metrics(self, metrics: dict, classes: list[str]) -> None:
        raise NotImplementedError

    # -- prediction ---------------------------------------------------------
    def predict_input_size(self, input_size: tuple[int, int], options: dict) -> tuple[int, int] | None:
        """The (h, w) the predictor resizes every image to: the checkpoint's input size by default.

        None keeps each image at its own size (e.g. segmentation predicted in tiles
        at full resolution); `predict_forward` then gets tensors of different sizes.
        """
        return input_size

    def predict_forward(self, model: nn.Module, images: list[torch.Tensor], device: torch.device, options: dict) -> Any:
        """Raw outputs for one batch of normalised images ([C, H, W] each), handed to `postprocess`."""
        return model(torch.stack(images).to(device, non_blocking=True))

    def postprocess(self, outputs: Any, metas: list[dict], options: dict) -> Iterable[dict]:
        """Turn a batch of raw outputs into one JSON-able record per image."""
        raise NotImplementedError
