"""Which mean/std a run normalises with: the recipe's, else the backbone's own."""
from __future__ import annotations

from visiontk.backbones.registry import get_backbone_spec


def resolve_normalization(recipe) -> dict:
    spec = get_backbone_spec(recipe.model.backbone)
    mean = recipe.data.mean if recipe.data.mean is not None else list(spec.mean)
    std = recipe.data.std if recipe.data.std is not None else list(spec.std)
    return {"mean": [float(x) for x in mean], "std": [float(x) for x in std]}
