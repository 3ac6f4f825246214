"""Building a task model from a recipe or from a checkpoint, the same way for every task."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from visiontk.backbones.pretrained import load_head_weights, load_pretrained, resolve_pretrained
from visiontk.backbones.registry import create_backbone
from visiontk.console import info, plural
from visiontk.engine.checkpoint import load_checkpoint
from visiontk.backbones.normalization import recipe_preprocess, resolve_normalization
from visiontk.data.preprocess import Preprocess
from visiontk.errors import UserError
from visiontk.recipe import Recipe
from visiontk.tasks.registry import get_task


def build_model(recipe: Recipe, num_classes: int, load_weights: bool = True, classes: list[str] | None = None,
                preprocess=None) -> nn.Module:
    """`preprocess`: the input the model reads (a checkpoint's); default the recipe's."""
    task = get_task(recipe.task)
    m = recipe.model
    pre = preprocess if preprocess is not None else recipe_preprocess(recipe)
    # The data's word on the backbone (a signal's length, a vocabulary): data/modality.py.
    backbone = create_backbone(m.backbone, in_channels=m.in_channels, output_stride=m.output_stride,
                               data_inputs=pre.backbone_inputs(),
                               **m.backbone_options)
    backbone.input_shape = pre.input_shape
    ref = None
    if load_weights and m.pretrained not in ("", "none"):
        ref = load_pretrained(backbone, m.backbone, m.pretrained)
    model = task.build_model(recipe, backbone, num_classes)
    if ref is not None and ref.get("state") is not None:
        # A visiontk checkpoint of the same task and classes: its head fits too.
        # Any other head (another task, class count or class list) is re-initialised.
        meta = ref["meta"]
        if meta.get("task") == recipe.task and (classes is None or list(meta.get("classes") or []) == list(classes)):
            load_head_weights(model, ref["state"], m.pretrained)
        else:
            info(f"head: re-initialised ({m.pretrained} is a {meta.get('task')} checkpoint with "
                 f"{plural(len(meta.get('classes') or []), 'class')}, this run has {num_classes})")
    return model


def checkpoint_meta(recipe: Recipe, classes: list[str], category_ids: list[int] | None = None) -> dict:
    """What a checkpoint needs besides weights to predict on its own.

    ``category_ids``: the data set's own id of each class (COCO category ids,
    sparse mask values), aligned with ``classes``; predict writes them back.
    """
    task = get_task(recipe.task)
    pre, norm = recipe_preprocess(recipe), resolve_normalization(recipe)
    ids = {} if category_ids is None else {"category_ids": [int(i) for i in category_ids]}
    return {
        "task": recipe.task,
        "backbone": recipe.model.backbone,
        "classes": list(classes),
        # The one description of how a file becomes the input (data/preprocess.py);
        # input_size, in_channels, mean and std repeat it for readers of older checkpoints.
        "preprocess": pre.to_dict(),
        "input_size": list(recipe.image_size),
        "in_channels": recipe.model.in_channels,
        "mean": norm["mean"],
        "std": norm["std"],
        "recipe": recipe.to_dict(),
        "predict": dict(task.predict_defaults),
        "pretrained": pretrained_summary(recipe),
        **ids,
    }


def pretrained_summary(recipe: Recipe) -> dict:
    """Which weights a run started from, with their own normalisation and input size."""
    ref = resolve_pretrained(recipe.model.backbone, recipe.model.pretrained)
    if ref["kind"] == "none":
        return {"kind": "none", "name": "none"}
    return {k: ref[k] for k in ("kind", "name", "mean", "std", "input_size")}


class _OverBudget(Exception):
    pass


class _AllocationBudget(TorchFunctionMode):
    """Refuses the tensor factory calls that module constructors make (torch.empty,
    zeros, ...) once they would hold more than `limit` elements in all, before the
    memory is taken."""

    FACTORIES = {torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn}

    def __init__(self, limit: int):
        super().__init__()
        self.limit, self.used = limit, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.FACTORIES and args:
            size = args[0] if isinstance(args[0], (tuple, list, torch.Size)) else args
            if all(isinstance(n, int) for n in size):
                self.used += math.prod(size)
                if self.used > self.limit:
                    raise _OverBudget
        return func(*args, **(kwargs or {}))


def check_weights_fit(recipe: Recipe, num_classes: int, state: dict, source) -> None:
    """The model that `recipe` and `num_classes` describe against the stored weights
    (resuming a run checks its last.pt with this before building anything)."""
    _fitting_model(recipe, num_classes, state, source)


def _fitting_model(recipe: Recipe, num_classes: int, state: dict, source, preprocess=None) -> nn.Module | None:
    """The model `recipe` and `num_classes` describe, built once it is known to fit the
    stored weights: a tampered class list or backbone width is one line naming the
    first key that differs, before a model larger than the weights is allocated (a
    width of 4096 asked for 10 GB before load_state_dict said "size mismatch").

    Built on the CPU under an allocation budget (twice the stored weights, plus room
    for the probe's input), and on the meta device (no memory) only when it goes
    past that: a forward on meta -- the backbone measures its strides with one --
    loads torch._dynamo and sympy (a second of start-up and 150 MB that predict
    otherwise never needs). Returns the model built under the budget (None when it
    was built on meta or could not be built here: the caller builds it for real)."""
    stored = sum(t.numel() for t in state.values() if isinstance(t, torch.Tensor)) if isinstance(state, dict) else 0
    model = None
    try:
        try:
            with _AllocationBudget(2 * stored + 4_000_000):
                model = build_model(recipe, num_classes, load_weights=False, preprocess=preprocess)
            expected = model.state_dict()
        except _OverBudget:
            with torch.device("meta"):
                expected = build_model(recipe, num_classes, load_weights=False, preprocess=preprocess).state_dict()
    except UserError:
        raise
    except Exception:  # noqa: BLE001 - a model that cannot be built here is checked when built for real
        return None
    if not isinstance(state, dict):
        raise UserError(f"{source}: 'model' is not a mapping of weights")
    for key, tensor in expected.items():
        stored = state.get(key)
        if not isinstance(stored, torch.Tensor):
            raise UserError(f"{source}: weights 'model.{key}' missing for the model its metadata describes")
        if tuple(stored.shape) != tuple(tensor.shape):
            raise UserError(f"{source}: weights 'model.{key}' have shape {list(stored.shape)}, but the model its "
                            f"metadata describes ({num_classes} classes, its recipe) needs {list(tensor.shape)}")
    extra = next((k for k in state if k not in expected), None)
    if extra is not None:
        raise UserError(f"{source}: weights 'model.{extra}' belong to no layer of the model its metadata describes")
    return model


def model_from_checkpoint(path, task: str | None = None) -> tuple[nn.Module, dict]:
    ckpt = load_checkpoint(path, task)
    return checkpoint_model(path, ckpt), ckpt


def checkpoint_model(path, ckpt: dict) -> nn.Module:
    """The model of a loaded checkpoint (`load_checkpoint`), its weights in, in eval mode."""
    recipe = ckpt["recipe_obj"]  # validated by load_checkpoint
    preprocess = Preprocess.from_checkpoint(ckpt)
    try:
        model = _fitting_model(recipe, len(ckpt["classes"]), ckpt.get("model"), path, preprocess)
        if model is None:
            model = build_model(recipe, len(ckpt["classes"]), load_weights=False, preprocess=preprocess)
        model.load_state_dict(ckpt["model"])
    except (KeyError, RuntimeError) as e:
        raise UserError(f"{path}: checkpoint does not match its model ({str(e).splitlines()[0][:200]})") from None
    model.eval()
    return model


class PendingModel:
    """A checkpoint's model, built when first needed.

    `predict` on the onnxruntime or OpenVINO backend runs a cached ONNX export of
    the checkpoint (engine/export_cache.py) and needs the PyTorch model only to
    export it the first time; building it anyway cost a torchvision backbone 2.5 s
    of start-up here (torchvision's import loads torch._dynamo). The export's key
    is the checkpoint's sha256, so a cached file was made, and checked against
    PyTorch, from these very weights."""

    def __init__(self, path, ckpt: dict):
        self.path, self.ckpt = path, ckpt
        self.device: torch.device | None = None
        self._model: nn.Module | None = None

    def to(self, device) -> "PendingModel":
        self.device = device
        if self._model is not None:
            self._model.to(device)
        return self

    def build(self) -> nn.Module:
        if self._model is None:
            self._model = checkpoint_model(self.path, self.ckpt)
            if self.device is not None:
                self._model.to(self.device)
        return self._model

    def architecture(self) -> str:
        """What the model's speed depends on, without building it: its recipe's model
        section, the class count, and the name and shape of every stored weight."""
        import json

        state = self.ckpt.get("model") or {}
        shapes = [[k, list(v.shape)] for k, v in state.items() if isinstance(v, torch.Tensor)]
        return json.dumps([self.ckpt["recipe_obj"].model.model_dump(mode="json"), len(self.ckpt["classes"]), shapes],
                          sort_keys=True, default=str)


def built(model):
    """The PyTorch module of `model` (a `PendingModel` is built now)."""
    return model.build() if isinstance(model, PendingModel) else model


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def state_dict_fp32(model: nn.Module) -> dict:
    return {k: v.detach().float().cpu() if v.is_floating_point() else v.detach().cpu() for k, v in unwrap(model).state_dict().items()}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

