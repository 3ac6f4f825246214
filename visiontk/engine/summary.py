"""A layer-by-layer summary of a model: output shape, parameters, mult-adds,
stride and receptive field per layer (or per block), then totals and the
memory a training step needs.

Why not torchinfo: it names rows by the modules it sees called, and the
torchvision backbones are fx graphs whose blocks are never called (a ResNet's
layers show as "Module" with no output shape or mult-adds), and it cannot see
residual sums or concatenations. So the rows come from the scoped op trace
(backbones/layer_trace.py) that the receptive fields need anyway, and the
mult-adds from torch's own `FlopCounterMode` (FLOPs / 2: it counts a
multiply-add as two), read around every op.

The pass runs on the meta device: shapes without arithmetic, so a summary of
ResNet-50 at 224 px takes as long as one at 32 px.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from visiontk.backbones.layer_trace import LayerTrace, Op, Scope
from visiontk.backbones.receptive_field import Field, ReceptiveFields, format_size
from visiontk.errors import UserError


@dataclass
class LayerRow:
    name: str
    kind: str
    depth: int
    call: int
    shape: list[int] | None = None  # per sample (no batch dimension)
    params: int = 0
    mult_adds: int = 0
    stride: float | None = None  # of this layer alone: output jump / input jump
    field: Field | None = None

    def to_dict(self) -> dict:
        d = {"name": self.name, "type": self.kind, "depth": self.depth, "call": self.call, "output_shape": self.shape,
             "params": self.params, "mult_adds": self.mult_adds, "stride": self.stride}
        d.update(self.field.to_dict() if self.field is not None else {"rf": None, "jump": None, "start": None})
        return d


@dataclass
class Summary:
    rows: list[LayerRow]
    input_shape: list[int]
    params: int
    trainable_params: int
    mult_adds: int
    batch_size: int
    memory: dict[str, int]  # bytes
    outputs: list[Field | None] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"input_shape": self.input_shape, "params": self.params, "trainable_params": self.trainable_params,
                "mult_adds": self.mult_adds, "batch_size": self.batch_size, "memory_bytes": self.memory,
                "output_rf": [format_size(f) for f in self.outputs]}


@dataclass
class _ScopeRecord:
    scope: Scope
    order: int
    output: torch.Tensor | None = None
    input: torch.Tensor | None = None
    flops: int = 0


class _ScopeStats:
    """Op callback: per scope, its first outside input, last output and FLOPs; activation bytes."""

    def __init__(self, counter: FlopCounterMode, fields: ReceptiveFields):
        self.counter, self.fields = counter, fields
        self.records: dict[tuple[str, int], _ScopeRecord] = {}
        self.producers: dict[int, frozenset] = {}
        self.seen_flops = 0
        self.activation_bytes = 0

    def __call__(self, op: Op) -> None:
        total = self.counter.get_total_flops()
        flops, self.seen_flops = total - self.seen_flops, total
        traced_in = [t for t in op.inputs if self.fields.of(t) is not None]
        keys = [s.key for s in op.scopes]
        # A module's output is the last tensor it computes from the input (not from its weights alone).
        output = next((y for y in op.outputs if self.fields.of(y) is not None), None)
        for scope in op.scopes:
            rec = self.records.get(scope.key)
            if rec is None:
                rec = self.records[scope.key] = _ScopeRecord(scope, len(self.records))
            if rec.input is None:
                rec.input = next((t for t in traced_in if scope.key not in self.producers.get(id(t), ())), None)
            rec.flops += flops
            if output is not None:
                rec.output = output
        for y in op.outputs:
            self.producers[id(y)] = frozenset(keys)
            # What backward keeps: every new tensor computed from the input (not an
            # in-place result or a view of one).
            if self.fields.of(y) is not None and not any(y is t for t in op.inputs) and y._base is None:
                self.activation_bytes += y.numel() * y.element_size()


def _stride(out: Field | None, inp: Field | None) -> float | None:
    if out is None or inp is None or out.covers_input:
        return None
    ratio = out.jump[1] / inp.jump[1]
    return int(ratio) if ratio.denominator == 1 else float(ratio)


def summarize(model: nn.Module, input_shape: tuple[int, ...], depth: int | None = None, batch_size: int = 1) -> Summary:
    """One forward pass of one sample of `input_shape` (C, H, W) on the meta device.

    Rows: with `depth=None`, one per layer (leaf module call); with a depth, the
    modules down to that depth (the name's dot count + 1), a block's row
    standing for everything inside it.
    `model` is moved to the meta device: pass a model you no longer need.
    """
    model = model.to("meta").eval()
    x = torch.zeros(1, *input_shape, device="meta")
    counter = FlopCounterMode(display=False)
    fields = ReceptiveFields()
    fields.seed(x)
    stats = _ScopeStats(counter, fields)
    try:
        with counter, torch.no_grad():
            out = LayerTrace(model, [fields, stats]).run(x)
    except RuntimeError as e:
        # Typically an input too small for the model's pools ("Output size is too small").
        reason = str(e).splitlines()[0].split(" While executing")[0][:200]
        raise UserError(f"cannot run the model on a {'x'.join(map(str, input_shape))} input: {reason}") from None

    modules = dict(model.named_modules())
    rows = []
    for key, rec in sorted(stats.records.items(), key=lambda kv: kv[1].order):
        name, call = key
        d = name.count(".") + 1
        module = modules.get(name)
        is_leaf = module is not None and not any(True for _ in module.children())
        if depth is None and not is_leaf or depth is not None and (d > depth or (d < depth and not is_leaf)):
            continue
        y = rec.output
        out_field = fields.of(y) if y is not None else None
        in_field = fields.of(rec.input) if rec.input is not None else None
        params = sum(p.numel() for p in module.parameters()) if module is not None and call == 0 else 0
        rows.append(LayerRow(name, rec.scope.kind, d, call, list(y.shape[1:]) if y is not None else None, params,
                             rec.flops // 2, _stride(out_field, in_field), out_field))

    outputs = [out] if isinstance(out, torch.Tensor) else list(out.values()) if isinstance(out, dict) else list(out) \
        if isinstance(out, (list, tuple)) else []
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    input_bytes = x.numel() * x.element_size() * batch_size
    # Forward keeps each activation for backward, and backward makes a gradient of
    # each (an upper bound: autograd frees some early); weights get a gradient too.
    activations = 2 * stats.activation_bytes * batch_size
    memory = {"input": input_bytes, "activations_fwd_bwd": activations, "params": param_bytes,
              "param_grads": param_bytes, "total": input_bytes + activations + 2 * param_bytes}
    return Summary(rows, list(input_shape), params, trainable, counter.get_total_flops() // 2, batch_size, memory,
                   [fields.of(t) if isinstance(t, torch.Tensor) else None for t in outputs])


def format_number(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:g}"


def format_bytes(n: int) -> str:
    return f"{n / 2**20:.2f} MB"


def jump_text(f: Field | None) -> str:
    if f is None or f.covers_input:
        return "-"
    h, w = f.jump
    text = _fraction_text(h) if h == w else f"{_fraction_text(h)}x{_fraction_text(w)}"
    return text


def _fraction_text(x: Fraction) -> str:
    return str(int(x)) if x.denominator == 1 else f"{float(x):.3g}"


def summarize_backbone(name: str, image_size: int = 224, depth: int | None = None, batch_size: int = 32) -> Summary:
    from visiontk.backbones.registry import create_backbone

    # Built on the meta device: no weights are initialised (VGG-16 builds in a
    # fraction of the time), and the pass needs shapes only.
    with torch.device("meta"):
        backbone = create_backbone(name)
    if getattr(backbone, "vocab", None) is not None:
        raise UserError(f"{name}: reads token ids, not pixels or samples; 'model summary' of a trained "
                        f"checkpoint shows its layers")
    # A 1-D backbone (signals) reads [C, L]: --image-size is the length in samples.
    shape = (image_size,) if getattr(backbone, "dims", 2) == 1 else (image_size, image_size)
    return summarize(backbone, (backbone.in_channels, *shape), depth, batch_size)


def summarize_checkpoint(path: str, image_size: int | None = None, depth: int | None = None,
                         batch_size: int = 32) -> Summary:
    from visiontk.data.preprocess import Preprocess
    from visiontk.engine.build import model_from_checkpoint

    model, ckpt = model_from_checkpoint(path)
    preprocess = Preprocess.from_checkpoint(ckpt)
    size = (image_size, image_size) if image_size else preprocess.size
    if size is None:
        raise UserError(f"{path}: this model takes images at their own size; give --image-size")
    return summarize(model, (preprocess.channels, *size), depth, batch_size)
