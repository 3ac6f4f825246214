"""Recipes: one YAML file that says everything about a run.

A recipe is parsed with `yaml.safe_load`, dotted `--set key=value` overrides are
applied to the raw mapping, and the result is validated against the dataclass
schema below. Validation errors name the key path and, for unknown keys, the
closest valid key. Task-specific sections (`model.head`, `loss`) are validated
against the schemas the task registers, so a new task adds its options without
touching this file.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from visiontk.errors import UserError

_YAML11_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"


@dataclass
class ModelConfig:
    backbone: str = "tinycnn"
    # Options passed to the backbone builder (e.g. width for tinycnn).
    backbone_options: dict = field(default_factory=dict)
    # none | imagenet | a torchvision weights name (IMAGENET1K_V2) | a file path
    pretrained: str = "none"
    in_channels: int = 3
    # Task-specific head options, validated by the task's head schema.
    head: dict = field(default_factory=dict)


@dataclass
class SynthConfig:
    """Generate the synthetic shapes set into data.root when it is missing."""

    n: int = 600
    size: int = 64
    seed: int = 0


@dataclass
class DataConfig:
    format: str = "imagefolder"
    root: str = ""
    train: str = "train"
    val: str = "val"
    classes: Optional[list[str]] = None
    image_size: Union[int, list[int]] = 64
    # None: the backbone's (pretrained weights') normalisation.
    mean: Optional[list[float]] = None
    std: Optional[list[float]] = None
    # A list of {AlbumentationsTransformName: {params}} applied to training images.
    augment: list = field(default_factory=list)
    # How images are brought to image_size (data/preprocess.py, where the default
    # was measured) and whether JPEGs much larger than it are decoded at 1/2, 1/4
    # or 1/8 scale; used alike by training, eval and predict, saved in checkpoints.
    resize: Literal["bilinear", "area_from_2x"] = "bilinear"
    jpeg_draft: bool = True
    # What to do with a bad image or annotation: skip it with a warning, or stop.
    bad_annotations: Literal["skip", "error"] = "skip"
    # Format-specific options (annotation files etc.), validated by the reader.
    options: dict = field(default_factory=dict)
    synthetic: Optional[SynthConfig] = None


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    optimizer: Literal["sgd", "adamw", "adam"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Literal["none", "step", "cosine", "onecycle"] = "cosine"
    step_size: int = 10
    gamma: float = 0.1
    warmup_iters: int = 0
    label_smoothing: float = 0.0
    # auto: mixed precision on CUDA (bf16 where supported, else fp16), off on CPU;
    # true/false force it (true on the CPU means bf16 autocast); bf16 | fp16 | fp32
    # name the precision (bf16 on a CPU with AVX-512 BF16/AMX trains ~2x faster).
    amp: Union[bool, Literal["auto", "bf16", "fp16", "fp32"]] = "auto"
    # NHWC activations and weights (auto: on for CUDA; see engine/performance.py).
    channels_last: Union[bool, Literal["auto"]] = "auto"
    # torch.compile the model (slow start, faster steps on long runs; needs a C++ compiler or Triton).
    compile: bool = False
    grad_clip: Optional[float] = None
    # Stop when the validation fitness has not improved for this many epochs (0: never).
    patience: int = 0
    seed: int = 0
    workers: int = 0
    eval_every: int = 1


@dataclass
class StageConfig:
    """One fine-tuning stage; the stages run one after the other in one run (engine/stages.py)."""

    epochs: int
    name: str = ""
    # What trains: 'head' (the backbone frozen; linear probing when it is the
    # only stage), 'all', or an integer K: the head and the K deepest backbone
    # blocks (blocks = the backbone's stages at increasing stride).
    trainable: Union[Literal["head", "all"], int] = "all"
    # The head's learning rate in this stage (default train.lr).
    lr: Optional[float] = None
    # Backbone learning rate = lr x backbone_lr_scale for its deepest block, and
    # x layer_decay once more for each shallower block (layer-wise rates).
    backbone_lr_scale: float = 1.0
    layer_decay: float = 1.0
    # Frozen blocks always keep batch norm in eval mode; 'frozen' does so for the
    # trainable backbone blocks too (running statistics stay ImageNet's).
    bn: Literal["train", "frozen"] = "train"
    warmup_iters: Optional[int] = None  # default train.warmup_iters


_STAGE_CHECKS: dict[str, tuple[typing.Callable[[Any], bool], str]] = {
    "epochs": (lambda v: v >= 1, "must be >= 1"),
    "trainable": (lambda v: not isinstance(v, int) or v >= 0, "must be 'head', 'all' or a block count >= 0"),
    "lr": (lambda v: v is None or v > 0, "must be > 0"),
    "backbone_lr_scale": (lambda v: v > 0, "must be > 0"),
    "layer_decay": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
    "warmup_iters": (lambda v: v is None or v >= 0, "must be >= 0"),
}


def _check_stages(recipe: "Recipe", raw: dict, source: str) -> None:
    """Value checks per stage; with stages, train.epochs is their total."""
    if not recipe.stages:
        return
    for i, stage in enumerate(recipe.stages):
        for key, (ok, requirement) in _STAGE_CHECKS.items():
            if not ok(getattr(stage, key)):
                raise UserError(f"{source}: 'stages[{i}].{key}' {requirement}, got {getattr(stage, key)!r}")
    total = sum(s.epochs for s in recipe.stages)
    given = (raw.get("train") or {}).get("epochs") if isinstance(raw.get("train"), dict) else None
    if given is not None and given != total:
        # E.g. --set stages=... on a recipe written for one plain stage.
        from visiontk.console import warn

        warn(f"{source}: 'train.epochs' ({given}) is replaced by the sum of the stages' epochs ({total})")
    recipe.train.epochs = total


@dataclass
class OutputConfig:
    project: str = "runs"
    name: Optional[str] = None
    plots: bool = True


@dataclass
class Recipe:
    task: str
    name: str = "run"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # Task-specific loss options, validated by the task's loss schema.
    loss: dict = field(default_factory=dict)
    output: OutputConfig = field(default_factory=OutputConfig)
    # Fine-tuning stages (transfer learning); empty means one plain stage.
    stages: list[StageConfig] = field(default_factory=list)

    @property
    def image_size(self) -> tuple[int, int]:
        s = self.data.image_size
        return (s, s) if isinstance(s, int) else (int(s[0]), int(s[1]))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Value checks that types alone cannot express: key path -> (predicate, requirement).
_CHECKS: dict[str, tuple[typing.Callable[[Any], bool], str]] = {
    "train.epochs": (lambda v: v >= 1, "must be >= 1"),
    "train.batch_size": (lambda v: v >= 1, "must be >= 1"),
    "train.lr": (lambda v: v > 0, "must be > 0"),
    "train.momentum": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "train.weight_decay": (lambda v: v >= 0, "must be >= 0"),
    "train.label_smoothing": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "train.warmup_iters": (lambda v: v >= 0, "must be >= 0"),
    "train.patience": (lambda v: v >= 0, "must be >= 0"),
    "train.workers": (lambda v: v >= 0, "must be >= 0"),
    "train.eval_every": (lambda v: v >= 1, "must be >= 1"),
    "train.step_size": (lambda v: v >= 1, "must be >= 1"),
    "train.grad_clip": (lambda v: v is None or v > 0, "must be > 0"),
    "model.in_channels": (lambda v: v in (1, 3), "must be 1 or 3"),
    "data.image_size": (
        lambda v: (isinstance(v, int) and v >= 8) or (isinstance(v, list) and len(v) == 2 and all(x >= 8 for x in v)),
        "must be an integer >= 8 or a list [height, width]",
    ),
    "data.mean": (lambda v: v is None or len(v) in (1, 3), "must have 1 or 3 values"),
    "data.std": (lambda v: v is None or (len(v) in (1, 3) and all(x > 0 for x in v)), "must have 1 or 3 positive values"),
    "name": (lambda v: bool(v) and "/" not in v, "must be a non-empty name without '/'"),
}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None)) + " (or null)" * (
            type(None) in typing.get_args(tp)
        )
    if origin is list:
        args = typing.get_args(tp)
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false", dict: "a mapping", list: "a list"}.get(
        tp, str(tp)
    )


def _convert(value: Any, tp: Any, path: str, source: str) -> Any:
    """Check `value` against the annotation `tp`; return it converted (dataclasses built)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, path, source)
            except UserError as e:
                errors.append(e)
        raise UserError(f"{source}: '{path}' must be {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise UserError(f"{source}: '{path}' must be one of {_type_name(tp)}, got {value!r}")
        return value
    if origin is list or tp is list:
        if not isinstance(value, list):
            raise UserError(f"{source}: '{path}' must be {_type_name(tp)}, got {value!r}")
        args = typing.get_args(tp)
        return [_convert(v, args[0], f"{path}[{i}]", source) for i, v in enumerate(value)] if args else value
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise UserError(f"{source}: '{path}' must be a mapping, got {value!r}")
        return build_dataclass(tp, value, path, source)
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{source}: '{path}' must be true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{source}: '{path}' must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _YAML11_FLOAT.fullmatch(value.strip()):
            # YAML 1.1 reads 1e-3 (no dot) as a string; users mean a number.
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{source}: '{path}' must be a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an integer too large for a float
            number = math.inf
        if not math.isfinite(number):  # .inf / .nan / 1e999 would only make the loss NaN later
            raise UserError(f"{source}: '{path}' must be a finite number, got {value!r}")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise UserError(f"{source}: '{path}' must be a string, got {value!r}")
        return value
    if tp is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise UserError(f"{source}: '{path}' must be a mapping, got {value!r}")
        return value
    return value


def build_dataclass(cls: type, data: dict, path: str = "", source: str = "recipe") -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys with a suggestion."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
            hint = f" (did you mean '{(path + '.') if path else ''}{close[0]}'?)" if close else f" (valid keys: {', '.join(names)})"
            raise UserError(f"{source}: unknown key {key_path!r}{hint}")
        kwargs[key] = _convert(value, hints[key], key_path, source)
        check = _CHECKS.get(key_path)
        if check and not check[0](kwargs[key]):
            raise UserError(f"{source}: '{key_path}' {check[1]}, got {value!r}")
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise UserError(f"{source}: missing required key '{(path + '.') if path else ''}{missing[0]}'")
    return cls(**kwargs)


def parse_override(text: str) -> tuple[str, Any]:
    """`train.lr=0.01` -> ("train.lr", 0.01); the value is parsed as YAML."""
    if "=" not in text:
        raise UserError(f"--set {text!r}: expected KEY=VALUE, e.g. train.lr=0.01")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise UserError(f"--set {text!r}: bad key {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except (yaml.YAMLError, RecursionError) as e:
        raise UserError(f"--set {text!r}: value is not valid YAML ({str(e).splitlines()[0]})") from None
    return key, value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    for text in overrides:
        key, value = parse_override(text)
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UserError(f"--set {text!r}: '{part}' is not a mapping")
            node = child
        node[parts[-1]] = value
    return raw


def resolve_recipe_path(name_or_path: str) -> Path:
    """A path to a YAML file, or the name of a shipped recipe (e.g. classify/shapes)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    for candidate in (RECIPES_DIR / name_or_path, RECIPES_DIR / f"{name_or_path}.yaml"):
        if candidate.is_file():
            return candidate
    matches = sorted(RECIPES_DIR.glob(f"*/{name_or_path}.yaml")) if RECIPES_DIR.is_dir() else []
    if len(matches) == 1:
        return matches[0]
    raise UserError(f"{name_or_path}: no such recipe file or shipped recipe (see 'visiontk recipes list')")


def list_recipes() -> list[Path]:
    return sorted(RECIPES_DIR.glob("*/*.yaml")) if RECIPES_DIR.is_dir() else []


def read_yaml(path: Path) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read ({e.__class__.__name__}: {e})") from None
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise UserError(f"{path}: YAML nested too deeply") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{path}{where}: YAML syntax error: {problem}") from None


def load_recipe(name_or_path: str | Path, overrides: list[str] | None = None) -> Recipe:
    path = resolve_recipe_path(str(name_or_path))
    raw = read_yaml(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a recipe must be a YAML mapping, got {type(raw).__name__}")
    raw = apply_overrides(raw, overrides or [])
    return recipe_from_dict(raw, source=str(path))


def recipe_from_dict(raw: dict, source: str = "recipe") -> Recipe:
    # Imported here: tasks import this module for the schema.
    from visiontk.tasks.registry import get_task

    if "task" not in raw:
        raise UserError(f"{source}: missing required key 'task'")
    if not isinstance(raw["task"], str):
        raise UserError(f"{source}: 'task' must be a string, got {raw['task']!r}")
    task = get_task(raw["task"], source=source)
    recipe = build_dataclass(Recipe, raw, source=source)
    # Validate the task's own sections; store them back as plain dicts so the
    # recipe stays a plain, YAML-dumpable structure.
    recipe.model.head = dataclasses.asdict(build_dataclass(task.head_schema, recipe.model.head, "model.head", source))
    recipe.loss = dataclasses.asdict(build_dataclass(task.loss_schema, recipe.loss, "loss", source))
    _check_stages(recipe, raw, source)
    task.validate_recipe(recipe, source)
    return recipe


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False)
