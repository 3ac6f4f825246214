"""Receptive fields (backbones/receptive_field.py) against hand-derived values, and
against the empirical field: the input pixels whose gradient is non-zero for one
output unit of the network."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from helpers import run_cli
from visiontk.backbones.base import Backbone, StagedCNN
from visiontk.backbones.receptive_field import output_fields
from visiontk.backbones.registry import create_backbone
from visiontk.engine.summary import summarize_backbone


def test_lenet5_by_hand():
    # C1 5x5: r 5, j 1, start -2 (padding 2); S2 2/2: r 5+1=6, j 2; C3 5x5: r 6+4*2=14,
    # start -2-2*2=-6; S4 2/2: r 14+1*2=16, j 4; C5 5x5: r 16+4*4=32 (the whole 32x32
    # digit, as LeCun designed it), start -6-2*4=-14.
    rows = [r for r in summarize_backbone("lenet5", 32).rows if r.kind in ("Conv2d", "AvgPool2d")]
    assert [r.name for r in rows] == [f"body.stages.{s}.{i}" for s, i in ((0, 0), (0, 2), (1, 0), (1, 2), (1, 3))]
    assert [r.field.size for r in rows] == [(5, 5), (6, 6), (14, 14), (16, 16), (32, 32)]
    assert [r.field.jump[0] for r in rows] == [1, 2, 2, 4, 4]
    assert [r.field.start[0] for r in rows] == [-2, -2, -6, -6, -14]
    assert [r.stride for r in rows] == [1, 2, 1, 2, 1]


def test_vgg16_bn_reports_212_at_its_last_pool():
    # 3x3 convs add 2j, 2x2 pools add j and double j:
    # 3 5 | 6 | 10 14 | 16 | 24 32 40 | 44 | 60 76 92 | 100 | 132 164 196 | 212
    result = run_cli("backbones", "show", "vgg16_bn", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    rows = [r for r in doc["layers"] if r["type"] in ("Conv2d", "MaxPool2d")]
    assert [r["rf"][0] for r in rows] == [3, 5, 6, 10, 14, 16, 24, 32, 40, 44, 60, 76, 92, 100, 132, 164, 196, 212]
    last_pool = [r for r in rows if r["type"] == "MaxPool2d"][-1]
    assert (last_pool["name"], last_pool["rf"], last_pool["jump"]) == ("body.features.43", [212, 212], [32, 32])
    assert doc["output_rf"][-1] == "212"


class _Inception(nn.Module):
    """Concatenated branches of 1x1, 3x3, dilated 3x3 and pooled 1x1 paths, plus one
    path that is not centred (5x5 padded only on one side): the merged field is the
    union, flagged unaligned."""

    def __init__(self, c: int):
        super().__init__()
        self.b1 = nn.Conv2d(c, 4, 1)
        self.b2 = nn.Conv2d(c, 4, 3, padding=1)
        self.b3 = nn.Conv2d(c, 4, 3, padding=2, dilation=2)
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(c, 4, 1))
        self.b5 = nn.Sequential(nn.ZeroPad2d((4, 0, 4, 0)), nn.Conv2d(c, 4, 5))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x), self.b5(x)], 1)


def _multi_path() -> Backbone:
    stem = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU())
    return Backbone("multipath", StagedCNN([stem, nn.Sequential(_Inception(4), nn.MaxPool2d(2)), _Inception(20)]))


def _no_cancellation(backbone: nn.Module) -> nn.Module:
    """The network with weights that cannot cancel: every conv weight 1/fan-in and no
    bias, BN as identity (eval, default statistics), max pools replaced by average
    pools of the same geometry (a max routes the gradient to one pixel only)."""
    for name, module in list(backbone.named_modules()):
        if isinstance(module, nn.Conv2d):
            module.weight = nn.Parameter(torch.full_like(module.weight, 1.0 / module.weight[0].numel(), device="cpu"))
            module.bias = None
        elif isinstance(module, nn.BatchNorm2d):
            module.to_empty(device="cpu")
            module.reset_parameters()
            module.reset_running_stats()
        elif isinstance(module, nn.MaxPool2d):
            assert module.dilation in (1, (1, 1))
            parent_name, _, child = name.rpartition(".")
            parent = backbone.get_submodule(parent_name) if parent_name else backbone
            setattr(parent, child, nn.AvgPool2d(module.kernel_size, module.stride, module.padding,
                                                ceil_mode=module.ceil_mode))
    assert all(p.device.type == "cpu" for p in backbone.parameters())
    return backbone.eval()


def _nonzero_extent(grad: torch.Tensor, dim: int) -> tuple[int, int]:
    """First and last row (dim 2) or column (dim 3) of a (C, H, W) gradient with a non-zero value."""
    hit = (grad.abs().sum(dim=(0, 3 - (dim - 1))) != 0).nonzero().flatten()
    return int(hit.min()), int(hit.max())


@pytest.mark.parametrize("name,size", [("lenet5", 32), ("tinycnn", 64), ("resnet18", 40), ("multipath", 24)])
def test_theoretical_field_is_the_empirical_one(name, size, one_thread):
    # Built on the meta device: the weights are all set below, none needs initialising.
    with torch.device("meta"):
        backbone = _multi_path() if name == "multipath" else create_backbone(name)
        fields = output_fields(backbone.eval(), torch.zeros(1, backbone.in_channels, size, size))
    net = _no_cancellation(backbone)
    # One sample per (feature map, unit): corner units (the field runs into the padding)
    # and inner ones; sample k's loss is its own unit only, so one backward pass gives
    # each unit's gradient in its own sample.
    probe = net(torch.zeros(1, backbone.in_channels, size, size))
    units = [(i, (y, x)) for i, f in enumerate(probe) for (y, x) in
             {(0, 0), (f.shape[-2] // 2, f.shape[-1] // 3), (f.shape[-2] - 1, f.shape[-1] - 1)}]
    x = torch.full((len(units), backbone.in_channels, size, size), 0.5, requires_grad=True)
    feats = net(x)
    loss = sum(feats[i][k, :, y, xx].sum() for k, (i, (y, xx)) in enumerate(units))
    (grad,) = torch.autograd.grad(loss, x)
    for k, (i, unit) in enumerate(units):
        for dim, axis, u in ((2, fields[i].h, unit[0]), (3, fields[i].w, unit[1])):
            lo, hi = axis.region(u)
            # Where the field runs into the padding, the image clips it.
            expected = (max(0, int(lo)), min(size - 1, int(hi)))
            assert _nonzero_extent(grad[k], dim) == expected, (name, i, unit, dim, axis)
    if name == "multipath":
        # Stem: r 3, j 2. An inception's union reaches 4j left (the 5x5 padded on one
        # side) and 2j right (the dilated 3x3): 3 + 6*2 = 15, pool +2 = 17, j 4; then
        # 17 + 6*4 = 41. The widest path alone (5 wide, centred) would give 13 and 29.
        assert [f.size[0] for f in fields] == [3, 17, 41]
        assert [f.aligned for f in fields] == [True, False, False]


@pytest.mark.parametrize("dilation", [1, 2])
def test_signal_backbone_field_in_samples_by_hand_and_by_gradient(dilation):
    # conv1d_mnist1d: three convolutions, kernel 3, stride 2, no padding. By hand, with
    # k' = d (k - 1) + 1: r = 1 + (k' - 1)(1 + 2 + 4), j = 8 -> 15 samples (d 1), 29 (d 2).
    backbone = create_backbone("conv1d_mnist1d", dilation=dilation).eval()
    fields = output_fields(backbone, torch.zeros(1, 1, 80))
    assert [int(f.w.size) for f in fields] == ([3, 7, 15] if dilation == 1 else [5, 13, 29])
    assert [int(f.w.jump) for f in fields] == [2, 4, 8] and all(f.h.size == 1 for f in fields)
    # Empirically: the inputs one unit of the last map depends on (positive weights, so
    # nothing cancels; with dilation some samples inside the span are skipped, so the
    # span of the non-zero gradient is what the field bounds).
    for conv in (m for m in backbone.modules() if isinstance(m, nn.Conv1d)):
        conv.weight.data.fill_(1.0)
        conv.bias.data.zero_()
    x = torch.full((1, 1, 80), 0.5, requires_grad=True)
    unit = 2
    backbone(x)[-1][0, :, unit].sum().backward()
    hit = (x.grad[0, 0] != 0).nonzero().flatten()
    lo, hi = fields[-1].w.region(unit)
    assert (int(hit.min()), int(hit.max())) == (int(lo), int(hi))


def test_backbones_list_gives_signal_backbones_a_field_in_samples():
    out = run_cli("backbones", "list", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in map(json.loads, out.stdout.splitlines())}
    assert rows["conv1d_mnist1d"]["receptive_field"] == "15" and rows["vgg16_bn"]["receptive_field"] == "212"
