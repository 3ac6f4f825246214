"""1-D backbones for signals: the course's MNIST-1D CNN, an MLP baseline, and a 1-D ResNet.

Same contract as the 2-D ones (backbones/base.py): `forward(x [N, C, L])` returns
features at increasing stride, described by `out_channels` and `strides`
(in samples). `dilation` (the conv backbones) spaces the taps of every 3-tap
convolution: the receptive field grows without pooling or striding.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from visiontk.backbones.base import Backbone, StagedCNN
from visiontk.backbones.registry import register_backbone

PROBE_LENGTH = 256
SIGNAL_MEAN, SIGNAL_STD = (0.0,), (1.0,)


class Backbone1d(Backbone):
    """A backbone over [N, C, L] signals; channels and strides probed on a signal of `probe_length`."""

    dims = 1

    def __init__(self, name: str, body: nn.Module, in_channels: int = 1, probe_length: int = PROBE_LENGTH):
        super().__init__(name, body, in_channels, probe_size=probe_length)

    @torch.no_grad()
    def _probe(self, size: int) -> tuple[list[int], list[int]]:
        was_training = self.training
        self.eval()
        feats = self.forward(torch.zeros(1, self.in_channels, size))
        self.train(was_training)
        return [f.shape[1] for f in feats], [size // f.shape[-1] for f in feats]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[1] != self.in_channels:
            if x.shape[1] == 1:
                x = x.expand(-1, self.in_channels, -1)
            elif self.in_channels == 1:
                x = x.mean(dim=1, keepdim=True)
            else:
                raise ValueError(f"backbone {self.name} takes 1 or {self.in_channels} channels, got {x.shape[1]}")
        return list(self.body(x))


def _per_layer(dilation: int | Sequence[int], n: int, what: str) -> list[int]:
    values = [dilation] * n if isinstance(dilation, int) else list(dilation)
    if len(values) != n or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in values):
        raise TypeError(f"dilation must be an integer >= 1 or a list of {n} of them ({what})")
    return values


@register_backbone("conv1d_mnist1d", description="the course's MNIST-1D CNN: 3 x Conv1d(15, k3, s2) + ReLU (1-D)",
                   mean=SIGNAL_MEAN, std=SIGNAL_STD, in_channels=1)
def conv1d_mnist1d(in_channels: int = 1, channels: int = 15, dilation: int | list[int] = 1) -> Backbone:
    """Three unpadded Conv1d (kernel 3, stride 2), each followed by ReLU: 40 samples -> 19 -> 9 -> 4.

    With the classify head `pool: flatten` (a linear layer on the 15 x 4 features)
    this is the course's network: 2,050 parameters at 40 samples and 10 classes.
    """
    stages, cin = [], in_channels
    for d in _per_layer(dilation, 3, "one per convolution"):
        stages.append(nn.Sequential(nn.Conv1d(cin, channels, 3, stride=2, dilation=d), nn.ReLU(inplace=True)))
        cin = channels
    return Backbone1d("conv1d_mnist1d", StagedCNN(stages), in_channels)


class _Flat(nn.Module):
    """[N, C, L] -> [N, C x L, 1]: an MLP's input, kept a (length-1) signal for the contract."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).unsqueeze(-1)


class _Dense(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Flatten(1), nn.Linear(cin, cout), nn.ReLU(inplace=True), nn.Unflatten(1, (cout, 1)))


@register_backbone("mlp", description="fully-connected baseline on the flattened signal; 150,185 parameters "
                                      "with the linear head at 40 samples, 10 classes (1-D)",
                   mean=SIGNAL_MEAN, std=SIGNAL_STD, in_channels=1)
def mlp(in_channels: int = 1, length: int = 40, widths: Sequence[int] = (360, 365)) -> Backbone:
    """Linear + ReLU layers on the C x length values (the length comes from the data).

    Default widths: two hidden layers of 360 and 365 units, which with the
    classify head's linear layer make the course's fully-connected network size
    (150,185 parameters at 40 samples and 10 classes).
    """
    widths = list(widths)
    if not widths or not all(isinstance(w, int) and w >= 1 for w in widths):
        raise TypeError("widths must be a non-empty list of integers >= 1")
    layers: list[nn.Module] = [_Flat()]
    cin = in_channels * length
    for w in widths:
        layers.append(_Dense(cin, w))
        cin = w
    return Backbone1d("mlp", StagedCNN([nn.Sequential(*layers)]), in_channels, probe_length=length)


class BasicBlock1d(nn.Module):
    """ResNet basic block over time: two 3-tap convolutions with batch norm, identity (or 1x1) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv1d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm1d(cout)
        self.conv2 = nn.Conv1d(cout, cout, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm1d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv1d(cin, cout, 1, stride, bias=False), nn.BatchNorm1d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


@register_backbone("resnet1d", description="1-D ResNet: stem + 4 stages of basic blocks, stride 1, 2, 4, 8 (1-D)",
                   mean=SIGNAL_MEAN, std=SIGNAL_STD, in_channels=1)
def resnet1d(in_channels: int = 1, width: int = 32, blocks: Sequence[int] = (2, 2, 2, 2),
             dilation: int | list[int] = 1) -> Backbone:
    """Channels w, 2w, 4w, 8w; the first stage keeps the length, each next one halves it.
    `dilation`: of the blocks' convolutions, one value or one per stage."""
    blocks = list(blocks)
    if not blocks or not all(isinstance(b, int) and b >= 1 for b in blocks):
        raise TypeError("blocks must be a non-empty list of integers >= 1")
    dilations = _per_layer(dilation, len(blocks), "one per stage")
    stem = nn.Sequential(nn.Conv1d(in_channels, width, 5, padding=2, bias=False), nn.BatchNorm1d(width),
                         nn.ReLU(inplace=True))
    stages, cin = [], width
    for i, (n, d) in enumerate(zip(blocks, dilations)):
        cout = width * 2 ** i
        layers = [BasicBlock1d(cin, cout, 1 if i == 0 else 2, d)]
        layers += [BasicBlock1d(cout, cout, 1, d) for _ in range(n - 1)]
        stages.append(nn.Sequential(stem, *layers) if i == 0 else nn.Sequential(*layers))
        cin = cout
    return Backbone1d("resnet1d", StagedCNN(stages), in_channels)
