"""YOLO-v1 head: a backbone feature map -> an S x S grid of boxes and class scores."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


def grid_size_for(input_size: int, stride: int) -> int:
    """Side of the feature map a backbone of total `stride` gives for `input_size`.

    Convolutions with padding k//2 and stride 2 map n -> ceil(n / 2), and
    ceil(ceil(n / a) / b) == ceil(n / (a * b)), so a whole backbone gives
    ceil(input / stride). Choosing S equal to it means the head needs no pooling.
    """
    if input_size <= 0 or stride <= 0:
        raise ValueError(f"grid_size_for: input_size and stride must be positive, got {input_size}, {stride}")
    return max(1, math.ceil(input_size / stride))


def activate(raw: Tensor, B: int) -> Tensor:
    """Raw head outputs ``[..., B*5 + C]`` -> activated predictions, same layout.

    Why these activations:
    * x, y (offset in the cell) -> sigmoid: they live in [0, 1) by definition.
    * sqrt_w, sqrt_h -> sigmoid: the loss compares them with sqrt of the target
      size, which is in [0, 1]; predicting the square root directly (and
      squaring when decoding) never takes sqrt of a raw, possibly negative,
      output -- that gave NaN in the prototype.
    * conf -> sigmoid: a probability-like score trained with squared error.
    * classes -> softmax: the paper's class SSE is on probabilities, and a
      proper distribution makes conf x P(class) a sensible detection score.
    Sigmoids keep the squared-error loss bounded, which is what made the
    prototype stable on tiny data (no exploding early gradients).
    """
    boxes = raw[..., : B * 5].sigmoid()
    classes = raw[..., B * 5 :].softmax(dim=-1)
    return torch.cat([boxes, classes], dim=-1)


class YoloV1Head(nn.Module):
    """Conv 3x3 + BN + LeakyReLU(0.1) blocks, pool to S x S, 1x1 conv to B*5 + C.

    Input: the last (deepest) backbone feature map ``[N, in_channels, h, w]``,
    or the backbone's list of feature maps (the last one is used).
    Output: ``[N, S, S, B*5 + C]`` activated (see `activate`); per cell, B boxes
    of (x, y, sqrt_w, sqrt_h, conf), then C class probabilities.
    `forward_raw` gives the same layout before activation.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        C: int,
        S: int = 7,
        B: int = 2,
        width: int = 256,
        depth: int = 2,
        dropout: float = 0.0,
        conf_prior: float = 0.1,
    ) -> None:
        super().__init__()
        if C < 1 or S < 1 or B < 1:
            raise ValueError(f"YoloV1Head: C, S and B must be >= 1, got C={C}, S={S}, B={B}")
        if not 0.0 < conf_prior < 1.0:
            raise ValueError(f"YoloV1Head: conf_prior must be in (0, 1), got {conf_prior}")
        self.S, self.B, self.C = S, B, C
        self.out_features = B * 5 + C
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(depth):
            layers += [
                nn.Conv2d(channels, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.LeakyReLU(0.1, inplace=True),
            ]
            channels = width
        self.convs = nn.Sequential(*layers)
        # Pooling makes any input size work; when the map is already S x S it is
        # skipped in forward (adaptive pooling would be the identity anyway).
        self.pool = nn.AdaptiveAvgPool2d(S)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.pred = nn.Conv2d(channels, self.out_features, 1)
        self._init_pred(conf_prior)

    def _init_pred(self, conf_prior: float) -> None:
        # Small weights: every cell starts near the bias values below.
        nn.init.normal_(self.pred.weight, std=0.01)
        nn.init.zeros_(self.pred.bias)
        # Nearly all B*S*S predictors hold no object; starting conf at
        # `conf_prior` instead of 0.5 keeps the no-object loss from dominating
        # the first epochs. Not lower than ~0.1 by default: with a sigmoid +
        # squared error, the gradient for a positive scales with p(1-p), and a
        # 0.01 prior would make responsible boxes slow to rise.
        # x, y, sqrt_w, sqrt_h start at 0.5: cell centre, a box of 1/4 image side.
        with torch.no_grad():
            self.pred.bias[4 : self.B * 5 : 5] = math.log(conf_prior / (1.0 - conf_prior))

    def forward_raw(self, features: Tensor | Sequence[Tensor]) -> Tensor:
        x = features if isinstance(features, Tensor) else features[-1]
        x = self.convs(x)
        if tuple(x.shape[-2:]) != (self.S, self.S):
            x = self.pool(x)
        x = self.pred(self.dropout(x))
        # [N, D, S, S] -> [N, S(rows = y), S(cols = x), D]
        return x.permute(0, 2, 3, 1).contiguous()

    def forward(self, features: Tensor | Sequence[Tensor]) -> Tensor:
        return activate(self.forward_raw(features), self.B)
