"""The contracting path of the classic U-Net (Ronneberger et al. 2015) as a shared backbone.

Registered here rather than hidden inside the segmentation task so that the
paper's network is simply ``model.backbone: unet_encoder`` +
``model.head.decoder: unet``: the U-Net decoder's default widths mirror the
encoder, which gives exactly ``ClassicUNet`` (same layers, same parameters),
and every other piece (normalisation, grey/RGB input, recipes, checkpoints,
``visiontk backbones list``) works as for any backbone. The encoder has a
feature at stride 1, which no other backbone has, so the decoder ends at full
resolution without a final interpolation.
"""
from __future__ import annotations

import torch
from torch import nn

from visiontk.backbones.base import Backbone, conv_bn_relu
from visiontk.backbones.registry import register_backbone
from visiontk.errors import UserError


def double_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    """The U-Net's unit: two 3x3 conv-BN-ReLU ("same" padding, unlike the paper's valid convolutions)."""
    return nn.Sequential(conv_bn_relu(in_ch, out_ch), conv_bn_relu(out_ch, out_ch))


class UNetEncoder(nn.Module):
    """The classic U-Net contracting path; satisfies the backbone contract.

    Returns ``depth + 1`` features at strides 1, 2, ..., 2**depth with widths
    base, 2·base, ..., 2**depth·base.
    """

    def __init__(self, in_channels: int, base: int, depth: int) -> None:
        super().__init__()
        self.out_channels = [base * 2**i for i in range(depth + 1)]
        self.strides = [2**i for i in range(depth + 1)]
        self.stem = double_conv(in_channels, base)
        self.down = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), double_conv(c, 2 * c)) for c in self.out_channels[:-1]
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.stem(x)]
        for down in self.down:
            feats.append(down(feats[-1]))
        return feats


@register_backbone("unet_encoder", description="classic U-Net contracting path (base, depth options); "
                   "with the unet decoder it is the paper's U-Net")
def unet_encoder(in_channels: int = 3, base: int = 64, depth: int = 4) -> Backbone:
    """Double 3x3 conv-BN-ReLU blocks with 2x2 max pooling: strides 1..2**depth, widths base..base*2**depth."""
    if depth < 1 or base < 1:
        raise UserError(f"model.backbone_options: unet_encoder needs depth >= 1 and base >= 1, got depth {depth}, base {base}")
    return Backbone("unet_encoder", UNetEncoder(in_channels, base, depth), in_channels, probe_size=max(64, 2**depth))
