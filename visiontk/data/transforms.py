"""albumentations pipelines from the recipe's `data.augment` list.

Each entry is `{TransformName: {param: value}}` (or just `TransformName`),
naming any albumentations transform; resize and normalisation follow them,
done by the run's `Preprocess` (data/preprocess.py), so recipes list only the
augmentation itself.
"""
from __future__ import annotations

import albumentations as A

from visiontk.errors import UserError


def build_augmentations(augment: list, source: str = "recipe") -> list:
    out = []
    for i, entry in enumerate(augment or []):
        key = f"data.augment[{i}]"
        if isinstance(entry, str):
            name, params = entry, {}
        elif isinstance(entry, dict) and len(entry) == 1:
            name, params = next(iter(entry.items()))
            params = params or {}
        else:
            raise UserError(f"{source}: '{key}' must be a transform name or {{Name: {{params}}}}, got {entry!r}")
        cls = getattr(A, str(name), None)
        if not (isinstance(cls, type) and issubclass(cls, A.BasicTransform | A.BaseCompose)):
            raise UserError(f"{source}: '{key}': '{name}' is not an albumentations transform")
        if not isinstance(params, dict):
            raise UserError(f"{source}: '{key}.{name}' parameters must be a mapping, got {params!r}")
        try:
            out.append(cls(**params))
        except Exception as e:  # noqa: BLE001 - albumentations validates with pydantic and raises many types
            first = str(e).strip().splitlines()
            raise UserError(f"{source}: '{key}.{name}': bad parameters ({(first[0] if first else e.__class__.__name__)[:200]})") from None
    return out
