"""FCN decoder (Long, Shelhamer & Darrell 2015) on top of a multi-scale backbone.

FCN-32s scores the deepest feature and upsamples the score map ×32 in one
step. FCN-16s adds the score of the stride-16 feature after upsampling ×2,
then upsamples ×16; FCN-8s adds the stride-8 score as well, then ×8.

The variant names the output stride of the fused score map, as in the paper.
The decoder works for any deepest stride D that is a power of two ≥ the
variant's stride: it fuses the scores of strides D, D/2, ..., v (all must be
present in the backbone) and upsamples ×v at the end.

A dilated backbone (model.output_stride 8 or 16) has several features at its
deepest stride, e.g. strides [2, 4, 8, 8, 8]. The decoder scores every
feature at stride ≥ v as before; scores at the same stride are simply added
(no ×1 upsampler between them), so FCN-8s on a stride-8 ResNet sums the
scores of layer2, layer3 and layer4 and upsamples ×8. At output stride 32 the
layers are exactly the paper's.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from visiontk.errors import UserError

from .common import check_contract, match_size
from .upsample import BilinearConvTranspose2d

VARIANTS = {"32s": 32, "16s": 16, "8s": 8}


class FCNDecoder(nn.Module):
    """Score layers + bilinear-initialised transposed convolutions.

    ``forward(features)`` takes the backbone's list of features and returns
    logits ``[N, num_classes, H', W']`` at stride 1, where ``H'`` is the
    deepest feature's height times its stride (the caller crops to the input).
    """

    def __init__(
        self, in_channels: list[int], strides: list[int], num_classes: int, variant: str = "8s"
    ) -> None:
        super().__init__()
        check_contract(in_channels, strides)
        if variant not in VARIANTS:
            raise UserError(f"FCN variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        out_stride = VARIANTS[variant]
        deepest = max(strides)
        if deepest < out_stride:
            hint = f": use fcn{deepest}s" if f"{deepest}s" in VARIANTS else ""
            raise UserError(
                f"FCN-{variant} needs a backbone feature at stride >= {out_stride}; "
                f"backbone strides are {strides}{hint}"
            )
        # Strides fused from deepest to shallowest: D, D/2, ..., out_stride.
        fused = [deepest >> i for i in range(int(math.log2(deepest // out_stride)) + 1)]
        missing = [s for s in fused if s not in strides]
        if missing:
            raise UserError(
                f"FCN-{variant} needs backbone features at strides {fused}; "
                f"missing {missing} (backbone strides {strides})"
            )
        self.variant = variant
        self.num_classes = num_classes
        # Every feature at a fused stride, deepest first; `self.upsample_before[k]`: whether
        # the running score map is upsampled ×2 before feature k is added (False
        # where two features share a stride).
        self.feature_indices = [i for i in reversed(range(len(strides))) if strides[i] in fused]
        self.upsample_before = [False] + [strides[a] != strides[b]
                                   for a, b in zip(self.feature_indices, self.feature_indices[1:])]
        self.required_stride = deepest

        self.score = nn.ModuleList(
            nn.Conv2d(in_channels[i], num_classes, kernel_size=1) for i in self.feature_indices
        )
        # Skip score layers start at zero (as in the paper): at initialisation
        # FCN-8s equals FCN-32s and the skips only add what helps.
        for layer in list(self.score)[1:]:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.up2 = nn.ModuleList(
            BilinearConvTranspose2d(num_classes, 2) for _ in range(len(fused) - 1)
        )
        assert sum(self.upsample_before) == len(self.up2)
        # out_stride >= 8 always, so the final scale is even as the upsampler requires.
        self.final_up = BilinearConvTranspose2d(num_classes, out_stride)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        feats = [features[i] for i in self.feature_indices]
        logits = self.score[0](feats[0])
        ups = iter(self.up2)
        for upsample, score, feat in zip(self.upsample_before[1:], list(self.score)[1:], feats[1:]):
            if upsample:
                logits = match_size(next(ups)(logits), feat.shape[-2:])
            logits = logits + score(feat)
        return self.final_up(logits)
