"""Checkpoints of untrained models, built exactly as the trainer builds them, for tests
that need a model of some task but not a trained one (export, embeddings)."""
from __future__ import annotations

from pathlib import Path

import torch

from visiontk import __version__
from visiontk.engine.build import build_model, checkpoint_meta, state_dict_fp32
from visiontk.engine.checkpoint import FORMAT, VERSION
from visiontk.tasks.recipes import load_recipe


def save_untrained_checkpoint(path: Path, recipe: str, overrides: list[str], classes: list[str], seed: int = 0) -> Path:
    r = load_recipe(recipe, overrides)
    torch.manual_seed(seed)
    model = build_model(r, len(classes), classes=classes)
    # Random batch-norm statistics, so that an exporter that mixed up train and
    # eval mode would not go unnoticed.
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    ckpt = {"format": FORMAT, "version": VERSION, "visiontk": __version__, **checkpoint_meta(r, classes),
            "model": state_dict_fp32(model), "epoch": 0}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path
