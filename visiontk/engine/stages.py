"""Fine-tuning stages: which parameters train, at which learning rates, for how many epochs.

A recipe's `stages:` list splits the run's epochs into consecutive stages
(e.g. the head alone on a frozen backbone, then the last blocks at a lower
rate). Each stage starts a fresh optimizer and schedule over its own epochs;
the trainer saves the stage index with every checkpoint, so a resumed run
knows whether the optimizer state in last.pt belongs to the stage it resumes.

Everything here is generic: the backbone is the model's `backbone` attribute
(every task model has one), its blocks are `Backbone.stage_modules()`, and
whatever is not the backbone is "the head".
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from visiontk.backbones.base import Backbone
from visiontk.errors import UserError


@dataclass
class Stage:
    index: int  # 0-based
    start: int  # first epoch (0-based)
    end: int  # one past its last epoch
    config: object = None  # a recipe StageConfig; None for a run without stages


@dataclass
class Frozen:
    """What a stage froze: modules to keep in eval mode, and the blocks' layout."""

    eval_modules: list = field(default_factory=list)
    block_of: dict = field(default_factory=dict)  # id(parameter) -> backbone block index
    n_blocks: int = 0
    trainable_blocks: int = 0


def plan_stages(recipe) -> list[Stage]:
    if not recipe.stages:
        return [Stage(0, 0, recipe.train.epochs, None)]
    plan, start = [], 0
    for i, cfg in enumerate(recipe.stages):
        plan.append(Stage(i, start, start + cfg.epochs, cfg))
        start += cfg.epochs
    return plan


def stage_at(plan: list[Stage], epoch: int) -> Stage:
    """The stage epoch `epoch` (0-based) belongs to; the last one past the end."""
    for stage in plan:
        if epoch < stage.end:
            return stage
    return plan[-1]


def model_backbone(model: nn.Module) -> Backbone | None:
    backbone = getattr(model, "backbone", None)
    return backbone if isinstance(backbone, Backbone) else None


def apply_stage(model: nn.Module, stage: Stage) -> Frozen:
    """Set requires_grad of the backbone's parameters for `stage` (the head's are left as
    the task built them); return what to keep in eval mode while training."""
    cfg = stage.config
    if cfg is None:
        return Frozen()
    key = f"stages[{stage.index}].trainable"
    backbone = model_backbone(model)
    if backbone is None:
        if cfg.trainable != "all" or cfg.bn == "frozen" or cfg.backbone_lr_scale != 1.0 or cfg.layer_decay != 1.0:
            raise UserError(f"{key}: this model has no shared backbone to freeze or scale; use trainable: all")
        return Frozen()
    blocks = backbone.stage_modules()
    n = len(blocks)
    if cfg.trainable == "all":
        k = n
    elif cfg.trainable == "head":
        k = 0
    else:
        k = int(cfg.trainable)
        if k > n:
            raise UserError(f"{key}: {k} blocks asked, but backbone {backbone.name} has {n} "
                            f"(one per feature stride {backbone.strides})")
    block_of: dict[int, int] = {}
    for j, module in enumerate(blocks):
        for p in module.parameters():
            block_of.setdefault(id(p), j)
    for p in backbone.parameters():
        # A parameter no block claims counts as the stem's (block 0).
        p.requires_grad_(block_of.get(id(p), 0) >= n - k)
    eval_modules: list[nn.Module] = list(blocks[: n - k])
    if cfg.bn == "frozen":
        eval_modules += [m for m in backbone.modules() if isinstance(m, _BatchNorm)]
    return Frozen(eval_modules, block_of, n, k)


def keep_frozen_in_eval(frozen: Frozen) -> None:
    """After model.train(): frozen blocks (and 'bn: frozen' norms) back to eval mode, so
    their batch-norm statistics and dropout stay as they were."""
    for m in frozen.eval_modules:
        m.eval()


def stage_param_groups(model: nn.Module, stage: Stage, frozen: Frozen, weight_decay: float, lr: float) -> list[dict]:
    """Trainable parameters by part (head, then backbone blocks deepest first) and by weight decay.

    Head groups come first so that `param_groups[0]` is the head's rate. No
    weight decay on biases and norm weights, as in `optim.param_groups`.
    """
    cfg = stage.config
    backbone = model_backbone(model)
    in_backbone = {id(p) for p in backbone.parameters()} if backbone is not None else set()
    groups: dict[tuple[int, bool], list] = {}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        # Part: -1 for the head, else the backbone block index.
        part = frozen.block_of.get(id(p), 0) if id(p) in in_backbone else -1
        groups.setdefault((part, p.ndim > 1), []).append(p)
    out = []
    for (part, decay), params in sorted(groups.items(), key=lambda kv: (kv[0][0] != -1, -kv[0][0], not kv[0][1])):
        if part == -1:
            scale, name = 1.0, "head"
        else:
            scale = cfg.backbone_lr_scale * cfg.layer_decay ** (frozen.n_blocks - 1 - part)
            name = f"backbone.{part}"
        out.append({"params": params, "weight_decay": weight_decay if decay else 0.0, "lr": lr * scale,
                    "name": f"{name}{'' if decay else '_no_decay'}", "lr_scale": scale})
    return out


def describe_stage(stage: Stage, frozen: Frozen, n_stages: int, lr: float) -> str:
    cfg = stage.config
    if frozen.n_blocks == 0:
        what = "everything"
    elif frozen.trainable_blocks == 0:
        what = "the head (backbone frozen)"
    elif frozen.trainable_blocks == frozen.n_blocks:
        what = "everything"
    else:
        what = f"the head and the last {frozen.trainable_blocks} of {frozen.n_blocks} backbone blocks"
    rates = f"lr {lr:g}"
    if frozen.trainable_blocks and (cfg.backbone_lr_scale != 1.0 or cfg.layer_decay != 1.0):
        rates += f", backbone x{cfg.backbone_lr_scale:g}" + (f" (x{cfg.layer_decay:g} per block down)" if cfg.layer_decay != 1.0 else "")
    bn = ", backbone batch norm frozen" if cfg.bn == "frozen" else ""
    name = f" ({cfg.name})" if cfg.name else ""
    return f"stage {stage.index + 1}/{n_stages}{name}: epochs {stage.start + 1}-{stage.end}, trains {what}, {rates}{bn}"
