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


def update_kernel(groups: list[dict]) -> dict:
    """{"fused": True} when every parameter is a floating-point tensor on the CPU, else {}
    (torch's default: foreach on GPUs).

    torch's default on the CPU is the per-tensor loop: a handful of Python-dispatched
    ops per parameter tensor each step. The fused CPU kernels of SGD, Adam and AdamW
    update each tensor in one vectorised pass: one step of the tinycnn U-Net 9.6 ->
    2.4 ms, of the detect/shapes model 1.9 -> 0.55 ms (1 thread; benchmarks/README.md).
    The update formula is the same; the last bit of rounding may differ from the loop's.
    """
    params = [p for g in groups for p in g["params"]]
    if params and all(p.device.type == "cpu" and p.is_floating_point() for p in params):
        return {"fused": True}
    return {}


def build_optimizer(cfg, groups: list[dict]) -> torch.optim.Optimizer:
    kernel = update_kernel(groups)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0, **kernel)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, **kernel)
    return torch.optim.Adam(groups, lr=cfg.lr, **kernel)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """`optimizer.load_state_dict(state)` keeping this machine's update kernel: torch
    restores each group's fused/foreach flags from the checkpoint, which may come from
    another device or an older visiontk (the maths is the same either way)."""
    kernel = [(g.get("fused"), g.get("foreach")) for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for g, (fused, foreach) in zip(optimizer.param_groups, kernel):
        g["fused"], g["foreach"] = fused, foreach


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
