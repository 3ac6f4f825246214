"""U-Net decoder (Ronneberger et al. 2015) and the backbone-free classic U-Net.

Differences from the paper, and why:
- "same" padding, so the output has the input's size (the paper used valid
  convolutions and an overlap-tile strategy);
- BatchNorm after each 3×3 convolution (trains faster and more reliably
  from scratch on small data);
- dropout is applied to the deepest feature (the paper put it at the end of
  the contracting path).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from visiontk.backbones.unet import UNetEncoder, double_conv
from visiontk.errors import UserError

from .common import check_contract, deepest_at, match_size

UPSAMPLE_MODES = ("transpose", "bilinear")


class Up2(nn.Module):
    """×2 upsampling that also changes the channel count.

    'transpose': ConvTranspose2d k=2 s=2 (the paper's "up-convolution").
    'bilinear': fixed bilinear ×2 then a 1×1 conv; has no checkerboard artefacts.
    """

    def __init__(self, in_ch: int, out_ch: int, mode: str) -> None:
        super().__init__()
        if mode not in UPSAMPLE_MODES:
            raise UserError(f"upsample must be one of {UPSAMPLE_MODES}, got {mode!r}")
        self.mode = mode
        if mode == "transpose":
            self.conv: nn.Module = nn.ConvTranspose2d(in_ch, out_ch, kernel_size=2, stride=2)
        else:
            self.conv = nn.Conv2d(in_ch, out_ch, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "bilinear":
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.conv(x)


class DecoderStage(nn.Module):
    """Upsample ×2, concatenate the skip feature (if any), two 3×3 conv-BN-ReLU."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, upsample: str) -> None:
        super().__init__()
        self.up = Up2(in_ch, out_ch, upsample)
        self.convs = double_conv(out_ch + skip_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = self.up(x)
        if skip is not None:
            x = torch.cat([match_size(x, skip.shape[-2:]), skip], dim=1)
        return self.convs(x)


class UNetDecoder(nn.Module):
    """U-Net decoder over a backbone's features (any power-of-2 strides).

    Starts at the deepest feature and goes up one ×2 stage at a time until the
    shallowest feature's stride, concatenating the feature of the same stride
    where the backbone has one. Where several features share a stride (a
    dilated backbone: strides [2, 4, 8, 8, 8]) the deepest of them is the one
    used, as a plain U-Net takes each level's last feature: the decoder starts
    from layer4 at stride 8, and no stage upsamples by 1.
    ``decoder_channels`` gives each stage's width (one entry per stage, deepest first); by default each stage has the width
    of the skip feature it meets (the encoder mirrored), or half the previous
    stage's width where there is no skip.

    If the shallowest stride s > 1, the final 1×1 conv runs at stride s and the
    logits are upsampled bilinearly ×s: a 1×1 conv and bilinear interpolation
    are both linear (and the interpolation weights sum to 1, so the bias passes
    through), so this equals "upsample then 1×1 conv" at 1/s² of the cost.
    """

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        num_classes: int,
        decoder_channels: list[int] | None = None,
        upsample: str = "transpose",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_contract(in_channels, strides)
        deepest, shallowest = max(strides), min(strides)
        n_stages = int(math.log2(deepest // shallowest))
        # Target stride of each stage, deepest first.
        self.stage_strides = [deepest >> (i + 1) for i in range(n_stages)]
        self.deepest_index = deepest_at(strides, deepest)
        self.skip_indices = [deepest_at(strides, s) for s in self.stage_strides]
        skip_channels = [0 if i is None else in_channels[i] for i in self.skip_indices]
        if decoder_channels is None:
            decoder_channels = []
            prev = in_channels[self.deepest_index]
            for skip_ch in skip_channels:
                prev = skip_ch if skip_ch else max(prev // 2, 8)
                decoder_channels.append(prev)
        if len(decoder_channels) != n_stages:
            raise UserError(
                f"decoder_channels needs {n_stages} entries (one per ×2 stage from stride "
                f"{deepest} to {shallowest}), got {len(decoder_channels)}"
            )
        self.output_stride = shallowest
        self.required_stride = deepest
        self.num_classes = num_classes

        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        stages = []
        in_ch = in_channels[self.deepest_index]
        for skip_ch, out_ch in zip(skip_channels, decoder_channels):
            stages.append(DecoderStage(in_ch, skip_ch, out_ch, upsample))
            in_ch = out_ch
        self.stages = nn.ModuleList(stages)
        self.head = nn.Conv2d(in_ch, num_classes, kernel_size=1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.dropout(features[self.deepest_index])
        for stage, skip_index in zip(self.stages, self.skip_indices):
            x = stage(x, None if skip_index is None else features[skip_index])
        logits = self.head(x)
        if self.output_stride > 1:
            logits = F.interpolate(
                logits, scale_factor=self.output_stride, mode="bilinear", align_corners=False
            )
        return logits


class ClassicUNet(nn.Module):
    """Backbone-free U-Net: UNetEncoder + UNetDecoder with mirrored widths.

    Input height and width must be multiples of ``2**depth`` (``required_stride``);
    ``SegmentationModel`` pads for you.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 2,
        base: int = 64,
        depth: int = 4,
        upsample: str = "transpose",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise UserError(f"U-Net depth must be >= 1, got {depth}")
        self.encoder = UNetEncoder(in_channels, base, depth)
        self.decoder = UNetDecoder(
            self.encoder.out_channels,
            self.encoder.strides,
            num_classes,
            decoder_channels=self.encoder.out_channels[-2::-1],
            upsample=upsample,
            dropout=dropout,
        )
        self.required_stride = 2**depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))
