"""Receptive fields: which input pixels can change a feature map's unit.

Araujo, Norris and Sim, "Computing Receptive Fields of Convolutional Neural
Networks", Distill 2019. Per axis, a layer with kernel k, stride s, padding p
and dilation d (effective kernel k' = d (k - 1) + 1) maps the field of its
input (size r, jump j between neighbouring units, start u of unit 0's field in
input pixels) to

    r_out = r + (k' - 1) j      j_out = j s      u_out = u - p j

More generally every op handled here is a window: output unit o reads input
units a o + b .. a o + c, so r_out = r + (c - b) j, j_out = a j,
u_out = u + b j (a conv: a = s, b = -p, c = -p + k' - 1).

Multi-path networks (ResNet sums, Inception concatenations) are handled as
the paper does: each path is followed on its own and at the merge the field is
the union of the paths' fields -- the largest when the paths are aligned
(centred on the same pixel), which the paper requires for the field to be
well defined; a merge of unaligned paths is flagged (`aligned=False`).

The fields are tracked per tensor while the model runs (layer_trace), so
nothing is declared: the layers' own arguments are read as they are called.
Unknown ops that keep the spatial size pass the field on (activations,
normalisation); ops that change it in an unknown way (flatten, a mean over the
image) are taken as global over their input. Upsampling and transposed
convolutions have fractional jumps and are marked `exact=False`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Iterable, Sequence

import torch
from torch import nn

from visiontk.backbones.layer_trace import LayerTrace, Op


@dataclass(frozen=True)
class AxisField:
    size: Fraction   # r: input pixels spanned by one unit's field
    jump: Fraction   # j: input pixels between neighbouring units
    start: Fraction  # u: first input pixel of unit 0's field (negative: in the padding)

    @property
    def end(self) -> Fraction:
        return self.start + self.size - 1

    @property
    def centre(self) -> Fraction:
        return self.start + (self.size - 1) / 2

    def window(self, a, b, c) -> "AxisField":
        return AxisField(self.size + (c - b) * self.jump, self.jump * a, self.start + b * self.jump)

    def region(self, unit: int) -> tuple[Fraction, Fraction]:
        """First and last input pixel of the field of unit `unit` (unclipped)."""
        lo = self.start + unit * self.jump
        return lo, lo + self.size - 1


@dataclass(frozen=True)
class Field:
    h: AxisField
    w: AxisField
    aligned: bool = True       # False once a merge of paths centred on different pixels is upstream
    exact: bool = True         # False once a fractional window (upsampling) is upstream
    covers_input: bool = False  # a global operation (global pooling, flatten) is upstream

    @property
    def size(self) -> tuple[Fraction, Fraction]:
        return (self.h.size, self.w.size)

    @property
    def jump(self) -> tuple[Fraction, Fraction]:
        return (self.h.jump, self.w.jump)

    @property
    def start(self) -> tuple[Fraction, Fraction]:
        return (self.h.start, self.w.start)

    def to_dict(self) -> dict:
        return {"rf": [_number(self.h.size), _number(self.w.size)],
                "jump": [_number(self.h.jump), _number(self.w.jump)],
                "start": [_number(self.h.start), _number(self.w.start)],
                "aligned": self.aligned, "exact": self.exact, "global": self.covers_input}


def _number(x: Fraction):
    return int(x) if x.denominator == 1 else float(x)


INPUT_PIXEL = Field(AxisField(Fraction(1), Fraction(1), Fraction(0)), AxisField(Fraction(1), Fraction(1), Fraction(0)))


def merge(fields: Sequence[Field]) -> Field:
    """The field of a tensor computed from several: per axis the union of the fields of unit 0."""
    if len(fields) == 1:
        return fields[0]
    axes = []
    aligned = all(f.aligned for f in fields)
    exact = all(f.exact for f in fields)
    # A global path (squeeze-and-excitation's pooled branch) has no centre to align.
    local = [f for f in fields if not f.covers_input]
    for axis in ("h", "w"):
        parts = [getattr(f, axis) for f in fields]
        start = min(p.start for p in parts)
        end = max(p.end for p in parts)
        jumps = {p.jump for p in parts}
        centred = [getattr(f, axis) for f in local]
        if len({p.jump for p in centred}) > 1 or len({p.centre for p in centred}) > 1:
            aligned = False
        axes.append(AxisField(end - start + 1, min(jumps), start))
    return Field(axes[0], axes[1], aligned, exact, any(f.covers_input for f in fields))


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (list, tuple)):
        return (int(v[0]), int(v[-1])) if v else (None, None)
    return (int(v), int(v))


def _arg(op: Op, index: int, name: str, default):
    if name in op.kwargs:
        return op.kwargs[name]
    return op.args[index] if len(op.args) > index else default


def _windowed(field: Field, kernel, stride, padding, dilation) -> Field:
    axes = []
    for i, axis in enumerate((field.h, field.w)):
        k_eff = dilation[i] * (kernel[i] - 1) + 1
        axes.append(axis.window(stride[i], -padding[i], -padding[i] + k_eff - 1))
    return replace(field, h=axes[0], w=axes[1])


def _same_padding(kernel, dilation) -> tuple[int, int]:
    # torch pads 'same' with the smaller half first (the extra pixel goes right/bottom).
    return tuple((d * (k - 1)) // 2 for k, d in zip(kernel, dilation))


def _conv(op: Op, field: Field) -> Field:
    kernel = tuple(op.inputs[1].shape[-2:])
    stride = _pair(_arg(op, 3, "stride", 1))
    dilation = _pair(_arg(op, 5, "dilation", 1))
    padding = _arg(op, 4, "padding", 0)
    if padding == "same":
        padding = _same_padding(kernel, dilation)
    elif padding == "valid":
        padding = (0, 0)
    return _windowed(field, kernel, stride, _pair(padding), dilation)


def _conv_transpose(op: Op, field: Field) -> Field:
    # Output o reads inputs i with i s - p + t d = o, t in 0..k-1: a window of
    # inputs (o + p - (k' - 1)) / s .. (o + p) / s, with a fractional jump 1/s.
    kernel = tuple(op.inputs[1].shape[-2:])
    stride = _pair(_arg(op, 3, "stride", 1))
    padding = _pair(_arg(op, 4, "padding", 0))
    dilation = _pair(_arg(op, 7, "dilation", 1))
    axes = []
    for i, axis in enumerate((field.h, field.w)):
        k_eff = dilation[i] * (kernel[i] - 1) + 1
        s = Fraction(stride[i])
        axes.append(axis.window(1 / s, (padding[i] - k_eff + 1) / s, padding[i] / s))
    return replace(field, h=axes[0], w=axes[1], exact=field.exact and stride == (1, 1))


def _pool(op: Op, field: Field, has_dilation: bool) -> Field:
    kernel = _pair(_arg(op, 1, "kernel_size", 1))
    stride = _arg(op, 2, "stride", None)
    stride = kernel if stride is None or stride == [] or stride == () else _pair(stride)
    padding = _pair(_arg(op, 3, "padding", 0))
    dilation = _pair(_arg(op, 4, "dilation", 1)) if has_dilation else (1, 1)
    return _windowed(field, kernel, stride, padding, dilation)


def _resampled(field: Field, in_hw, out_hw, linear: bool) -> Field:
    """Adaptive pooling and interpolation: output o reads inputs near o n / m."""
    axes, exact, covers = [], field.exact, field.covers_input
    for axis, n, m in zip((field.h, field.w), in_hw, out_hw):
        if m == 1:
            axes.append(axis.window(n, 0, n - 1))
            covers = covers or n > 1
        elif n % m == 0:  # pooling by an integer factor
            f = n // m
            axes.append(axis.window(f, 0, f - 1))
        else:
            a = Fraction(n, m)
            width = math.ceil(a) if not linear else 1
            axes.append(axis.window(a, 0, width))
            exact = False
    return replace(field, h=axes[0], w=axes[1], exact=exact, covers_input=covers)


def _one(v, default: int) -> int:
    if isinstance(v, (list, tuple)):
        return int(v[0]) if v else default
    return int(v) if v is not None else default


def _line(op: Op, field: Field, x: torch.Tensor, name: str) -> Field | None:
    """1-D convolutions and pools as windows along w (signals: lengths in samples)."""
    if name == "conv1d":
        k = op.inputs[1].shape[-1]
        stride, dilation = _one(_arg(op, 3, "stride", 1), 1), _one(_arg(op, 5, "dilation", 1), 1)
        padding = _arg(op, 4, "padding", 0)
        padding = (dilation * (k - 1)) // 2 if padding == "same" else 0 if padding == "valid" else _one(padding, 0)
        return _windowed(field, (1, k), (1, stride), (0, padding), (1, dilation))
    if name in ("max_pool1d", "max_pool1d_with_indices", "avg_pool1d"):
        k = _one(_arg(op, 1, "kernel_size", 1), 1)
        stride = _one(_arg(op, 2, "stride", None), k)
        padding = _one(_arg(op, 3, "padding", 0), 0)
        dilation = _one(_arg(op, 4, "dilation", 1), 1) if name != "avg_pool1d" else 1
        return _windowed(field, (1, k), (1, stride), (0, padding), (1, dilation))
    y = op.outputs[0]
    if name.startswith("adaptive_") and y.dim() == 3:
        return _resampled(field, (1, x.shape[-1]), (1, y.shape[-1]), linear=False)
    return None


def _global(field: Field, hw) -> Field:
    return _resampled(field, hw, (1, 1), False)


def _pad(op: Op, field: Field) -> Field:
    pad = list(_arg(op, 1, "pad", ()))
    left, top = (pad + [0, 0, 0, 0])[0], (pad + [0, 0, 0, 0])[2]
    return replace(field, h=field.h.window(1, -top, -top), w=field.w.window(1, -left, -left))


class ReceptiveFields:
    """An op callback for LayerTrace: the field of every tensor derived from the input."""

    def __init__(self):
        # id -> (tensor, field). The tensors are held so their ids are not reused.
        self._fields: dict[int, tuple[torch.Tensor, Field]] = {}

    def seed(self, x: torch.Tensor, field: Field = INPUT_PIXEL) -> None:
        self._fields[id(x)] = (x, field)

    def of(self, t) -> Field | None:
        entry = self._fields.get(id(t))
        return entry[1] if entry is not None and entry[0] is t else None

    def __call__(self, op: Op) -> None:
        traced = [(t, self.of(t)) for t in op.inputs]
        traced = [(t, f) for t, f in traced if f is not None]
        if not traced:
            return
        x, field = traced[0]
        spatial = x.dim() == 4
        name = op.name
        out = None
        if spatial and name == "conv2d":
            out = _conv(op, field)
        elif spatial and name == "conv_transpose2d":
            out = _conv_transpose(op, field)
        elif spatial and name in ("max_pool2d", "max_pool2d_with_indices"):
            out = _pool(op, field, has_dilation=True)
        elif spatial and name == "avg_pool2d":
            out = _pool(op, field, has_dilation=False)
        elif spatial and (name.startswith("adaptive_") or name in ("interpolate", "upsample")):
            y = op.outputs[0]
            if y.dim() == 4:
                mode = _arg(op, 3, "mode", "nearest") if name in ("interpolate", "upsample") else "pool"
                out = _resampled(field, x.shape[-2:], y.shape[-2:], linear="linear" in str(mode))
        elif spatial and name == "pad":
            out = _pad(op, field)
        elif x.dim() == 3:  # a signal [N, C, L]: the w axis, in samples (h stays one sample)
            out = _line(op, field, x, name)
        if out is None:
            out = merge([self._passed_on(t, f, op.outputs[0]) for t, f in traced])
        for y in op.outputs:
            self._fields[id(y)] = (y, out)

    @staticmethod
    def _passed_on(t: torch.Tensor, field: Field, y: torch.Tensor) -> Field:
        """Field of an op's input as seen by an op that keeps or drops its grid."""
        if t.dim() == 4 and not (y.dim() == 4 and y.shape[-2:] == t.shape[-2:]):
            return _global(field, t.shape[-2:])
        if t.dim() == 3 and not (y.dim() == 3 and y.shape[-1] == t.shape[-1]):
            return _global(field, (1, t.shape[-1]))
        return field


def trace_fields(model: nn.Module, x: torch.Tensor, extra: Iterable = ()) -> tuple[object, ReceptiveFields]:
    """Run `model(x)` with fields tracked (plus any other op callbacks); (output, fields)."""
    fields = ReceptiveFields()
    fields.seed(x)
    with torch.no_grad():
        out = LayerTrace(model, [fields, *extra]).run(x)
    return out, fields


def output_fields(model: nn.Module, x: torch.Tensor) -> list[Field | None]:
    """The field of each tensor the model returns (a backbone: one per feature map)."""
    out, fields = trace_fields(model, x)
    tensors = [out] if isinstance(out, torch.Tensor) else list(out.values()) if isinstance(out, dict) else list(out)
    return [fields.of(t) for t in tensors]


def format_size(field: Field | None) -> str:
    """'212', '212x180', 'global' (a global op upstream), '~37' (fractional steps upstream)."""
    if field is None:
        return "-"
    if field.covers_input:
        return "global"
    h, w = (_number(v) for v in field.size)
    # A signal's field is one sample high: its length alone, in samples.
    text = f"{h:g}" if h == w else f"{w:g}" if field.h == INPUT_PIXEL.h else f"{h:g}x{w:g}"
    return text if field.exact else f"~{text}"


def probe_input(backbone: nn.Module, size: int) -> torch.Tensor:
    """One input of side `size` for `backbone`: an image [1, C, size, size], a signal
    [1, C, size] (1-D backbones), or `size` token ids (text backbones)."""
    if getattr(backbone, "vocab", None) is not None:
        return torch.zeros(1, size, dtype=torch.long)
    if getattr(backbone, "dims", 2) == 1:
        return torch.zeros(1, backbone.in_channels, size)
    return torch.zeros(1, backbone.in_channels, size, size)
