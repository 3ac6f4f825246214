"""Receptive fields (backbones/receptive_field.py) against hand-derived values and
against the empirical field: the input pixels whose gradient is non-zero for one
output unit."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from visiontk.backbones.receptive_field import output_fields
from visiontk.backbones.registry import create_backbone


def _no_cancellation(backbone: nn.Module) -> nn.Module:
    """The network with weights that cannot cancel: every conv weight 1/fan-in and no
    bias, BN as identity (eval, default statistics), max pools replaced by average
    pools of the same geometry (a max routes the gradient to one pixel only). In
    float64 no gradient of a reachable pixel underflows to 0."""
    for name, module in list(backbone.named_modules()):
        if isinstance(module, nn.Conv2d):
            with torch.no_grad():
                module.weight.fill_(1.0 / module.weight[0].numel())
                if module.bias is not None:
                    module.bias.zero_()
        elif isinstance(module, nn.BatchNorm2d):
            module.reset_parameters()
            module.reset_running_stats()
        elif isinstance(module, nn.MaxPool2d):
            assert module.dilation in (1, (1, 1))
            parent_name, _, child = name.rpartition(".")
            parent = backbone.get_submodule(parent_name) if parent_name else backbone
            setattr(parent, child, nn.AvgPool2d(module.kernel_size, module.stride, module.padding,
                                                ceil_mode=module.ceil_mode))
    return backbone.double().eval()


def _nonzero_extent(grad: torch.Tensor, dim: int) -> tuple[int, int]:
    hit = (grad.abs().sum(dim=(0, 1, 5 - dim)) != 0).nonzero().flatten()
    return int(hit.min()), int(hit.max())


@pytest.mark.parametrize("name,size", [("lenet5", 32), ("tinycnn", 64), ("vgg11_bn", 64), ("resnet18", 96),
                                       ("googlenet", 64)])
def test_theoretical_field_is_the_empirical_one(name, size):
    backbone = create_backbone(name)
    fields = output_fields(backbone.eval(), torch.zeros(1, backbone.in_channels, size, size))
    net = _no_cancellation(backbone)
    x = torch.full((1, backbone.in_channels, size, size), 0.5, dtype=torch.float64, requires_grad=True)
    feats = net(x)
    checked = 0
    for i, (feat, field) in enumerate(zip(feats, fields)):
        fh, fw = feat.shape[-2:]
        for unit in {(0, 0), (fh // 2, fw // 3), (fh - 1, fw - 1)}:
            (grad,) = torch.autograd.grad(feat[0, :, unit[0], unit[1]].sum(), x, retain_graph=True)
            for dim, axis, u in ((2, field.h, unit[0]), (3, field.w, unit[1])):
                lo, hi = axis.region(u)
                # Where the field runs into the padding, the image clips it.
                expected = (max(0, int(lo)), min(size - 1, int(hi)))
                assert _nonzero_extent(grad, dim) == expected, (name, i, unit, dim, axis)
                checked += 1
    assert checked >= 6 * len(feats) - 4
