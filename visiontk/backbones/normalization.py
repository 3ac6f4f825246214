"""Which mean/std a run normalises with: the recipe's, else that of the weights it starts from;
and the whole preprocessing (data/preprocess.py) a recipe trains with.

Pretrained weights expect the input scaled as they were trained (ImageNet
statistics for torchvision, (x - 127) / 128 for EfficientNet-Lite, the source
run's for a visiontk checkpoint); without pretrained weights the backbone's
own default applies.
"""
from __future__ import annotations

from visiontk.backbones.registry import get_backbone_spec
from visiontk.data.modality import modality
from visiontk.data.preprocess import Preprocess


def _weights_normalization(recipe) -> tuple[list, list]:
    from visiontk.backbones.pretrained import resolve_pretrained
    from visiontk.errors import UserError

    spec = get_backbone_spec(recipe.model.backbone)
    try:
        ref = resolve_pretrained(recipe.model.backbone, recipe.model.pretrained)
    except UserError:
        # A bad weights name is reported where the weights are loaded.
        return list(spec.mean), list(spec.std)
    return ref["mean"], ref["std"]


def resolve_normalization(recipe) -> dict:
    if recipe.data.mean is not None and recipe.data.std is not None:
        mean, std = recipe.data.mean, recipe.data.std
    else:
        w_mean, w_std = _weights_normalization(recipe)
        mean = recipe.data.mean if recipe.data.mean is not None else w_mean
        std = recipe.data.std if recipe.data.std is not None else w_std
    return {"mean": [float(x) for x in mean], "std": [float(x) for x in std]}


def pin_normalization(recipe) -> None:
    """Write the resolved mean/std into the recipe, so that the saved recipe (and every
    evaluation of its checkpoints) keeps them even when the weights file is gone."""
    norm = resolve_normalization(recipe)
    recipe.data.mean, recipe.data.std = norm["mean"], norm["std"]


def recipe_preprocess(recipe) -> Preprocess:
    """What a run trains and evaluates with, and what its checkpoints carry: the
    preprocess of the recipe's input modality (data/modality.py; a `Preprocess` for images)."""
    norm = resolve_normalization(recipe)
    return modality(recipe.data.format).recipe_preprocess(recipe, norm["mean"], norm["std"])
