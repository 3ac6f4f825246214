"""The input-modality seam: image | signal | text.

Everything that depends on what the model reads goes through two objects
instead of `if` chains through the code:

- a **Modality** (this module's registry), chosen by `data.format`: it builds
  the training / evaluation data of a classification recipe
  (`classification_data`), the recipe's preprocessing (`recipe_preprocess`),
  and the synthetic set (`has_training_data`, `synthesize`, `synthetic_set`);
- its **preprocess** object, chosen by the `kind` of a checkpoint's stored
  `preprocess` (absent: image). `data/preprocess.py`'s `Preprocess` is the
  image one; `data/signals.py` and `data/text.py` hold the others. They share
  the interface the predictor, eval and export use: `decode(item)`,
  `finish(array)`, `normalize(array)`, `normalize_batch(batch)`, `size`,
  `channels`, `item_meta(item)`, `sources` (what SOURCE arguments hold),
  `input_shape`, `example(n, generator)`, `export_input()`,
  `backbone_inputs()`, `to_dict()`.

Modules are imported on first use, so the image path never loads the others.
"""
from __future__ import annotations

import importlib
from typing import Any, Mapping

IMAGE, SIGNAL, TEXT = "image", "signal", "text"
# data.format -> modality; every other format reads images.
_FORMAT_MODALITY = {"signals": SIGNAL, "text": TEXT}
# modality -> module holding its `MODALITY` (data/signals.py, data/text.py) and preprocess class.
_MODULES = {IMAGE: "visiontk.data.imagefolder", SIGNAL: "visiontk.data.signals", TEXT: "visiontk.data.text"}


def input_noun(kind: str) -> str:
    """What one input of a modality (or of a preprocess `kind`) is called in counts:
    "image", "signal" or "text" (`console.plural` makes "3 signals")."""
    return {SIGNAL: "signal", TEXT: "text"}.get(kind, "image")


def modality_name(data_format: str) -> str:
    return _FORMAT_MODALITY.get(data_format, IMAGE)


def modality(data_format: str) -> Any:
    """The Modality object of a recipe's data.format."""
    return importlib.import_module(_MODULES[modality_name(data_format)]).MODALITY


def preprocess_kind(stored: Mapping[str, Any]) -> str:
    return str(stored.get("kind", IMAGE))


def preprocess_class(kind: str) -> type:
    """The preprocess class of a stored `preprocess` whose kind is `kind` (signal | text)."""
    if kind not in _MODULES or kind == IMAGE:
        from visiontk.errors import UserError

        raise UserError(f"preprocess: unknown kind {kind!r} (known: {', '.join(_MODULES)})")
    return importlib.import_module(_MODULES[kind]).MODALITY.preprocess_type
