"""Backbones torchvision does not have: LeNet-5, AlexNet with batch norm, and a tiny CNN."""
from __future__ import annotations

from torch import nn

from visiontk.backbones.base import Backbone, StagedCNN, conv_bn_relu
from visiontk.backbones.registry import register_backbone


@register_backbone("tinycnn", description="small fast CNN for tests and CPU demos (width option)")
def tinycnn(in_channels: int = 3, width: int = 16) -> Backbone:
    """Five stride-2 stages of conv-BN-ReLU; channels w, 2w, 4w, 8w, 8w."""
    w = width
    chans = [w, 2 * w, 4 * w, 8 * w, 8 * w]
    stages = []
    cin = in_channels
    for c in chans:
        stages.append(nn.Sequential(conv_bn_relu(cin, c, 3, 2), conv_bn_relu(c, c, 3, 1)))
        cin = c
    return Backbone("tinycnn", StagedCNN(stages), in_channels)


@register_backbone("lenet5", description="LeNet-5 (LeCun 1998): tanh, average-pool subsampling")
def lenet5(in_channels: int = 1) -> Backbone:
    # Padding keeps the classic 5x5 kernels but lets any input size through
    # (the original takes 32x32 and has no padding in C3/C5).
    stages = [
        nn.Sequential(nn.Conv2d(in_channels, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2)),  # C1, S2
        nn.Sequential(
            nn.Conv2d(6, 16, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),  # C3, S4
            nn.Conv2d(16, 120, 5, padding=2), nn.Tanh(),  # C5
        ),
    ]
    return Backbone("lenet5", StagedCNN(stages), in_channels)


@register_backbone("alexnet", description="AlexNet (Krizhevsky 2012) with batch norm in place of LRN")
def alexnet(in_channels: int = 3) -> Backbone:
    # Pools pad by 1 so each stage halves the size exactly (stride 4, 8, 16, 32).
    pool = lambda: nn.MaxPool2d(3, 2, padding=1)  # noqa: E731
    stages = [
        nn.Sequential(nn.Conv2d(in_channels, 64, 11, 4, 5, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True)),
        nn.Sequential(pool(), conv_bn_relu(64, 192, 5)),
        nn.Sequential(pool(), conv_bn_relu(192, 384), conv_bn_relu(384, 256), conv_bn_relu(256, 256)),
        pool(),
    ]
    return Backbone("alexnet", StagedCNN(stages), in_channels)
