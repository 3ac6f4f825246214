"""Optimizers and per-iteration learning-rate schedules from the recipe."""
from __future__ import annotations

import math

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float, lr: float, backbone_lr_scale: float = 1.0) -> list[dict]:
    """Backbone and head in separate groups (transfer learning scales the backbone's
    lr); no weight decay on biases and norm weights, where it only hurts."""
    groups: dict[tuple[str, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        part = "backbone" if name.startswith("backbone.") else "head"
        decay = p.ndim > 1
        groups.setdefault((part, decay), []).append(p)
    out = []
    for (part, decay), params in sorted(groups.items()):
        scale = backbone_lr_scale if part == "backbone" else 1.0
        out.append({"params": params, "weight_decay": weight_decay if decay else 0.0, "lr": lr * scale,
                    "name": f"{part}{'' if decay else '_no_decay'}", "lr_scale": scale})
    return out


def build_optimizer(cfg, groups: list[dict]) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.Adam(groups, lr=cfg.lr)


def lr_factor(cfg, it: int, iters_per_epoch: int, total_iters: int) -> float:
    """Multiplier of the base lr at iteration `it` (0-based): linear warmup times the schedule."""
    warm = 1.0
    if cfg.warmup_iters > 0 and it < cfg.warmup_iters:
        warm = (it + 1) / cfg.warmup_iters
    t = min(it / max(total_iters, 1), 1.0)
    if cfg.schedule == "step":
        sched = cfg.gamma ** ((it // max(iters_per_epoch, 1)) // cfg.step_size)
    elif cfg.schedule == "cosine":
        sched = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t))
    elif cfg.schedule == "onecycle":
        # 30% rise from lr/25 to lr, then cosine annealing to lr/1e4 (as torch's OneCycleLR).
        if t < 0.3:
            sched = 0.04 + 0.96 * 0.5 * (1 - math.cos(math.pi * t / 0.3))
        else:
            sched = 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * (t - 0.3) / 0.7))
        warm = 1.0  # onecycle has its own warmup
    else:
        sched = 1.0
    return warm * sched


def build_scheduler(cfg, optimizer, iters_per_epoch: int, epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    total = iters_per_epoch * epochs
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(cfg, it, iters_per_epoch, total))
