"""The backbone contract every head consumes.

`forward(x) -> list[Tensor]`: feature maps at increasing stride, described by
`out_channels` and `strides`. Nothing outside `backbones/` reaches into a
backbone's layers by name.
"""
from __future__ import annotations

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """Wraps a feature extractor `body` (returning a list of features) with its metadata."""

    def __init__(self, name: str, body: nn.Module, in_channels: int = 3, probe_size: int = 64):
        super().__init__()
        self.name = name
        self.body = body
        self.in_channels = in_channels
        self.out_channels, self.strides = self._probe(probe_size)

    @torch.no_grad()
    def _probe(self, size: int) -> tuple[list[int], list[int]]:
        # Channels and strides are measured, not declared, so they can't drift
        # from the real layers.
        was_training = self.training
        self.eval()
        feats = self.forward(torch.zeros(1, self.in_channels, size, size))
        self.train(was_training)
        return [f.shape[1] for f in feats], [size // f.shape[-1] for f in feats]

    @property
    def max_stride(self) -> int:
        return self.strides[-1]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        # Accept 1- and 3-channel input whatever the stem was built for: grey
        # images are repeated into RGB stems (keeps pretrained weights valid),
        # RGB images are averaged into grey stems.
        if x.shape[1] != self.in_channels:
            if x.shape[1] == 1:
                x = x.expand(-1, self.in_channels, -1, -1)
            elif self.in_channels == 1:
                x = x.mean(dim=1, keepdim=True)
            else:
                raise ValueError(f"backbone {self.name} takes 1 or {self.in_channels} channels, got {x.shape[1]}")
        feats = self.body(x)
        return list(feats.values()) if isinstance(feats, dict) else list(feats)


class StagedCNN(nn.Module):
    """A plain sequence of stages; the output of each stage is one feature map."""

    def __init__(self, stages: list[nn.Module]):
        super().__init__()
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


def conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )
