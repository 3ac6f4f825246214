"""Small helpers shared by the segmentation decoders."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from visiontk.errors import UserError


def match_size(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop (or zero-pad) ``x`` at the bottom/right to spatial ``size``.

    Upsampling a stride-2s map by 2 gives ``2*ceil(H/2s)`` pixels, one more than
    the stride-s map when the input is not a multiple of the stride; some
    backbones (floor pooling) give one less. Aligning on the top-left corner
    keeps pixel (0, 0) of every scale on the same image location.
    """
    h, w = size
    x = x[..., :h, :w]
    dh, dw = h - x.shape[-2], w - x.shape[-1]
    if dh > 0 or dw > 0:
        x = F.pad(x, (0, dw, 0, dh))
    return x


def check_contract(in_channels: list[int], strides: list[int]) -> None:
    """Validate the backbone contract lists a decoder receives."""
    if len(in_channels) != len(strides) or not strides:
        raise UserError(
            f"backbone contract: {len(in_channels)} out_channels for {len(strides)} strides"
        )
    # Equal neighbours are allowed: a dilated backbone (model.output_stride)
    # keeps its last stages at one stride, e.g. [2, 4, 8, 8, 8].
    if any(b < a for a, b in zip(strides, strides[1:])):
        raise UserError(f"backbone strides must not decrease, got {strides}")
    if any(s < 1 or s & (s - 1) for s in strides):
        raise UserError(f"backbone strides must be powers of 2, got {strides}")


def deepest_at(strides: list[int], stride: int) -> int | None:
    """Index of the deepest feature at `stride` (the last one computed), None if there is none.

    With a dilated backbone several features share a stride; the last of them
    has seen all the layers before it, as the skip of a stride level is the
    encoder's output at that level in a plain backbone.
    """
    at = [i for i, s in enumerate(strides) if s == stride]
    return at[-1] if at else None


def label_map(logits: torch.Tensor, dim: int) -> torch.Tensor:
    """The class index of each pixel: the first maximum along ``dim`` (as argmax).

    ``max(dim).indices`` rather than ``argmax(dim)``: on the CPU, argmax over a
    dimension that is not the innermost one ran 10x slower in torch 2.14
    (a 4x480x640 map: 25 ms against 1.9 ms; benchmarks/README.md), and for
    ties both give the first maximum.
    """
    return logits.max(dim).indices
