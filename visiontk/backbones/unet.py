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

from visiontk.backbones.base import Backbone
from visiontk.backbones.registry import register_backbone
from visiontk.errors import UserError


@register_backbone("unet_encoder", description="classic U-Net contracting path (base, depth options); "
                   "with the unet decoder it is the paper's U-Net")
def unet_encoder(in_channels: int = 3, base: int = 64, depth: int = 4) -> Backbone:
    """Double 3x3 conv-BN-ReLU blocks with 2x2 max pooling: strides 1..2**depth, widths base..base*2**depth."""
    # Imported here: the segmentation package pulls in albumentations and pycocotools,
    # which classification runs should not pay for.
    from visiontk.tasks.segment.unet import UNetEncoder

    if depth < 1 or base < 1:
        raise UserError(f"model.backbone_options: unet_encoder needs depth >= 1 and base >= 1, got depth {depth}, base {base}")
    return Backbone("unet_encoder", UNetEncoder(in_channels, base, depth), in_channels, probe_size=max(64, 2**depth))
