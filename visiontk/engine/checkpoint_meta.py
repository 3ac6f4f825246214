"""A checkpoint's metadata is untrusted input: validated like a recipe, bounds included.

Anyone can hand over a `best.pt`. `torch.load(weights_only=True)` keeps its
code from running; this module keeps its data from doing harm: before any
model is built or image decoded, the stored recipe goes through the recipe
validation (schema/task rules), and input size, channels, classes,
normalisation, preprocessing and predict settings through the same field
types the recipe uses (so a bound added to the recipe applies here too). A
bad value is one line naming the file and the key.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import ConfigDict, Field, ValidationError, create_model

from visiontk.console import plural
from visiontk.data.preprocess import Preprocess
from visiontk.errors import UserError
from visiontk.recipe import Recipe, Section, rule
from visiontk.recipe.fields import STRICT_VALUES
from visiontk.recipe.messages import validation_error
from visiontk.recipe.schema import DataConfig, ModelConfig
from visiontk.tasks.options.fields import option_meta
from visiontk.tasks.recipes import recipe_from_dict
from visiontk.tasks.registry import command_spec, get_task

# More classes than any real label set (ImageNet-21k has 21841): a bigger list
# would only allocate a head that the stored weights cannot fill.
MAX_CLASSES = 100_000
MAX_NAME = 1000


def _recipe_type(model: type, name: str, required: bool = False) -> Any:
    """The type (with its bounds) of a recipe field; `required`: without its Optional."""
    info = model.model_fields[name]
    tp = Annotated[tuple([info.annotation, *info.metadata])] if info.metadata else info.annotation
    if required and typing.get_origin(tp) is typing.Union:
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = members[0] if len(members) == 1 else typing.Union[tuple(members)]
    return tp


ImageSize = _recipe_type(DataConfig, "image_size")
Channels = _recipe_type(ModelConfig, "in_channels")
Mean = _recipe_type(DataConfig, "mean")
Std = _recipe_type(DataConfig, "std")
ClassName = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]


class PreprocessMeta(Section):
    """data/preprocess.py's `Preprocess.to_dict()`, in the recipe's types."""

    size: Optional[ImageSize] = None
    channels: Channels = 3
    mean: _recipe_type(DataConfig, "mean", required=True)
    std: _recipe_type(DataConfig, "std", required=True)
    resize: _recipe_type(DataConfig, "resize") = "bilinear"
    jpeg_draft: _recipe_type(DataConfig, "jpeg_draft") = True


def _signal_meta() -> type[Section]:
    from visiontk.data.signals import MAX_LENGTH as MAX_SIGNAL_LENGTH

    class SignalPreprocessMeta(Section):
        """data/signals.py's `SignalPreprocess.to_dict()`."""

        kind: Literal["signal"]
        length: Annotated[int, Field(ge=2, le=MAX_SIGNAL_LENGTH)]
        channels: Annotated[int, Field(ge=1, le=64)] = 1
        mean: Annotated[list[float], Field(min_length=1, max_length=64)]
        std: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=1, max_length=64)]

    return SignalPreprocessMeta


def _text_meta() -> type[Section]:
    from visiontk.data.text import MAX_LEN as MAX_TEXT_LEN, MAX_VOCAB, PAD as TEXT_PAD, UNK as TEXT_UNK

    def _vocabulary(tokens: list[str]) -> bool:
        return len(tokens) >= 2 and tokens[:2] == [TEXT_PAD, TEXT_UNK] and len(set(tokens)) == len(tokens)

    class TextPreprocessMeta(Section):
        """data/text.py's `TextPreprocess.to_dict()`: the vocabulary built at training."""

        kind: Literal["text"]
        vocab: Annotated[list[Annotated[str, Field(max_length=MAX_NAME)]], Field(max_length=MAX_VOCAB),
                         rule(_vocabulary, f"must start with {TEXT_PAD}, {TEXT_UNK} and repeat no token")]
        max_len: Annotated[int, Field(ge=1, le=MAX_TEXT_LEN)]
        lowercase: bool = True
        min_freq: Annotated[int, Field(ge=1)] = 1
        pad: Literal["<pad>"] = "<pad>"
        unk: Literal["<unk>"] = "<unk>"

    return TextPreprocessMeta


def _preprocess_kind(value: Any) -> str:
    kind = value.get("kind", "image") if isinstance(value, dict) else "image"
    return kind if isinstance(kind, str) else "image"


# The stored preprocessing of each input modality (data/modality.py), told apart by
# `kind` (absent: an image's, as in every checkpoint before signals and text); each
# validated under the key `preprocess`, so that errors name 'preprocess.<key>'. The
# signal and text models are defined when a checkpoint of theirs is read: an image
# checkpoint does not import data/signals.py and data/text.py for their bounds.
_PREPROCESS_META = {"image": lambda: PreprocessMeta, "signal": _signal_meta, "text": _text_meta}


@functools.cache
def _preprocess_holder(kind: str) -> type[Section]:
    model = _PREPROCESS_META[kind]()
    return create_model(f"{model.__name__}Holder", __base__=Section, preprocess=(model, ...))


def _check_preprocess(ckpt: dict, source: str) -> None:
    stored = ckpt.get("preprocess")
    if stored is None:
        return
    kind = _preprocess_kind(stored)
    if kind not in _PREPROCESS_META:
        raise UserError(f"{source}: 'preprocess.kind' must be one of {', '.join(_PREPROCESS_META)}, got {kind!r}")
    holder = _preprocess_holder(kind)
    raw = {"preprocess": stored}
    try:
        holder.model_validate(raw)
    except ValidationError as e:
        raise validation_error(e, holder, raw, source) from None


class CheckpointMeta(Section):
    # The weights and optimizer state are not metadata: other keys are left to their readers.
    model_config = ConfigDict(extra="ignore", **STRICT_VALUES)

    task: str
    backbone: Optional[str] = None
    classes: Annotated[list[ClassName], Field(min_length=1, max_length=MAX_CLASSES)]
    recipe: dict
    # Validated by its kind's model (_check_preprocess).
    preprocess: Optional[dict] = None
    # Checkpoints written before `preprocess` existed say it with these.
    input_size: Optional[ImageSize] = None
    in_channels: Optional[Channels] = None
    mean: Mean = None
    std: Std = None
    predict: dict = Field(default_factory=dict)
    # The data set's own ids of the classes (COCO category ids, sparse mask values), aligned with `classes`.
    category_ids: Optional[Annotated[list[Annotated[int, Field(ge=0, le=2**31 - 1)]], Field(max_length=MAX_CLASSES)]] = None
    # The training state --resume goes on from.
    epoch: Optional[Annotated[int, Field(ge=0)]] = None
    stage: Optional[Annotated[int, Field(ge=0)]] = None
    best_epoch: Optional[Annotated[int, Field(ge=0)]] = None
    bad_epochs: Optional[Annotated[int, Field(ge=0)]] = None  # early stopping's count
    history: Optional[list[dict[str, typing.Union[int, float, str]]]] = None
    # per_class.csv's rows (epoch, class, one value per per-class metric; None where undefined).
    per_class_history: Optional[list[dict[str, typing.Optional[typing.Union[int, float, str]]]]] = None


def validate_checkpoint(ckpt: dict, path: str | Path) -> Recipe:
    """Check every piece of metadata of a loaded checkpoint; its stored recipe, validated.

    Raises a UserError naming `path` and the key.
    """
    source = str(path)
    try:
        CheckpointMeta.model_validate(ckpt)
    except ValidationError as e:
        raise validation_error(e, CheckpointMeta, ckpt, source) from None
    _check_preprocess(ckpt, source)
    recipe = recipe_from_dict(ckpt["recipe"], source=f"{source} (recipe)", augmentations=False)
    if recipe.task != ckpt["task"]:
        raise UserError(f"{source}: 'recipe.task' is '{recipe.task}' but the checkpoint's task is '{ckpt['task']}'")
    if ckpt.get("preprocess") is None and ckpt.get("input_size") is None:
        raise UserError(f"{source}: missing required key 'preprocess'")
    try:
        pre = Preprocess.from_checkpoint(ckpt)
    except UserError as e:
        raise UserError(f"{source}: {e}") from None
    _check_consistent(ckpt, pre, recipe, source)
    _check_predict(ckpt["predict"], ckpt["task"], source)
    return recipe


def _check_consistent(ckpt: dict, pre: Preprocess, recipe: Recipe, source: str) -> None:
    """Keys that say the same thing twice must agree: each alone is in bounds, but a
    tampered pair (a preprocess size of 4096 beside an input_size of 32, two
    category ids for three classes) would be used half one way, half the other."""
    ids = ckpt.get("category_ids")
    if ids is not None and len(ids) != len(ckpt["classes"]):
        raise UserError(f"{source}: 'category_ids' has {plural(len(ids), 'id')} for {plural(len(ckpt['classes']), 'class')}")
    if ids is not None and len(set(ids)) != len(ids):
        raise UserError(f"{source}: 'category_ids' repeats an id")
    if getattr(pre, "kind", "image") != "image":
        return  # a signal's or text's preprocess: its own model checked it (_check_preprocess)
    if len(pre.mean) != pre.channels or len(pre.std) != pre.channels:
        raise UserError(f"{source}: 'preprocess' has {len(pre.mean)} mean and {len(pre.std)} std values "
                        f"for {plural(pre.channels, 'channel')}")
    if pre.channels != recipe.model.in_channels:
        raise UserError(f"{source}: 'preprocess.channels' is {pre.channels} but 'recipe.model.in_channels' is "
                        f"{recipe.model.in_channels}")
    if ckpt.get("preprocess") is None:
        return  # an older checkpoint: its preprocessing was rebuilt from the keys below
    legacy = {"input_size": None if pre.size is None else list(pre.size), "in_channels": pre.channels,
              "mean": list(pre.mean), "std": list(pre.std)}
    for key, value in legacy.items():
        stored = ckpt.get(key)
        if stored is None or value is None:
            continue
        stored = [stored, stored] if key == "input_size" and isinstance(stored, int) else stored
        read = stored
        if key in ("mean", "std") and isinstance(stored, list) and len(stored) > len(value):
            # Read as the preprocess reads a longer list: its first values. A grey model on
            # weights normalised per RGB channel (transfer/membrane-lite0) keeps all three here.
            read = stored[:len(value)]
        same = (list(stored) == value if key == "input_size"
                else stored == value if key == "in_channels"
                else len(read) == len(value) and all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(read, value)))
        if not same:
            field = {"input_size": "size", "in_channels": "channels"}.get(key, key)
            raise UserError(f"{source}: '{key}' is {stored} but 'preprocess.{field}' is {value}")


def _predict_bounds(task: str) -> dict[str, tuple[float | None, float | None]]:
    """(min, max) of each stored predict setting, from the options that read it."""
    spec = command_spec(task)
    bounds: dict[str, tuple[float | None, float | None]] = {}
    for options in (spec.predict_options, spec.eval_options):
        for f in dataclasses.fields(options):
            meta = option_meta(f)
            if meta.from_checkpoint is not None:
                bounds[meta.from_checkpoint] = (meta.min, meta.max)
    return bounds


def _check_predict(stored: dict, task: str, source: str) -> None:
    defaults, bounds = get_task(task).predict_defaults, _predict_bounds(task)
    for key, value in stored.items():
        if key not in defaults:
            raise UserError(f"{source}: unknown key 'predict.{key}'")
        integer = isinstance(defaults[key], int)
        lo, hi = bounds.get(key, (None, None))
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
              and (not integer or isinstance(value, int))
              and (lo is None or value >= lo) and (hi is None or value <= hi))
        if not ok:
            kind = "an integer" if integer else "a number"
            span = (f" from {lo:g} to {hi:g}" if lo is not None and hi is not None
                    else f" >= {lo:g}" if lo is not None else "")
            raise UserError(f"{source}: 'predict.{key}' must be {kind}{span}, got {value!r}")
