"""Backbone + decoder (or a self-contained U-Net) that accepts any input size."""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from visiontk.errors import UserError

from .fcn import FCNDecoder
from .unet import UNetDecoder

PAD_MODES = ("reflect", "replicate", "zero")


def _fcn(variant: str) -> Callable[..., nn.Module]:
    def build(in_channels: list[int], strides: list[int], num_classes: int, **options: Any) -> nn.Module:
        return FCNDecoder(in_channels, strides, num_classes, variant=variant, **options)

    return build


DECODERS: dict[str, Callable[..., nn.Module]] = {
    "fcn32s": _fcn("32s"),
    "fcn16s": _fcn("16s"),
    "fcn8s": _fcn("8s"),
    "unet": UNetDecoder,
}


def build_decoder(
    name: str, in_channels: list[int], strides: list[int], num_classes: int, **options: Any
) -> nn.Module:
    """Build a decoder by name: 'fcn32s' | 'fcn16s' | 'fcn8s' | 'unet'.

    ``options`` go to the decoder's constructor (e.g. ``decoder_channels``,
    ``upsample``, ``dropout`` for 'unet'); an unknown option is a UserError.
    """
    if name not in DECODERS:
        raise UserError(f"unknown segmentation decoder {name!r}; choose from {sorted(DECODERS)}")
    try:
        return DECODERS[name](list(in_channels), list(strides), num_classes, **options)
    except TypeError as exc:  # unexpected keyword from a recipe
        raise UserError(f"decoder {name!r}: {exc}") from exc


class SegmentationModel(nn.Module):
    """``SegmentationModel(backbone, decoder)`` or ``SegmentationModel(ClassicUNet(...))``.

    ``forward(x)`` pads ``x`` at the bottom/right to a multiple of the required
    stride (the backbone's largest stride, or the network's
    ``required_stride``), runs the network and crops the logits back to the
    input's H×W, so any size works.

    Padding mode: 'reflect' (default) continues the image content, so the
    network sees no artificial edge next to real pixels; when the padding is
    at least as large as the image side (reflect is then undefined) it falls
    back to 'replicate'. 'zero' pads with 0, i.e. the mean colour after
    normalisation. Padding only at the bottom/right keeps the stride grid
    anchored at pixel (0, 0), so cropping is a plain slice.
    """

    def __init__(
        self, backbone: nn.Module, decoder: nn.Module | None = None, pad_mode: str = "reflect"
    ) -> None:
        super().__init__()
        if pad_mode not in PAD_MODES:
            raise UserError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        self.backbone = backbone
        self.decoder = decoder
        self.pad_mode = pad_mode
        if decoder is not None:
            self.required_stride = int(max(backbone.strides))
        elif hasattr(backbone, "required_stride"):
            self.required_stride = int(backbone.required_stride)
        else:
            raise UserError(
                "SegmentationModel needs a decoder, or a network with `required_stride` "
                "(e.g. ClassicUNet)"
            )

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        s = self.required_stride
        h, w = x.shape[-2:]
        ph, pw = -h % s, -w % s
        if ph == 0 and pw == 0:
            return x
        if self.pad_mode == "zero":
            return F.pad(x, (0, pw, 0, ph))
        mode = self.pad_mode
        if mode == "reflect" and (ph >= h or pw >= w):
            mode = "replicate"
        return F.pad(x, (0, pw, 0, ph), mode=mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        padded = self._pad(x)
        if self.decoder is None:
            logits = self.backbone(padded)
        else:
            logits = self.decoder(self.backbone(padded))
        return logits[..., :h, :w]
