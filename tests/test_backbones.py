import math

import pytest
import torch

from visiontk.backbones.registry import backbone_names, create_backbone

EXPECTED = {"lenet5", "alexnet", "vgg11_bn", "vgg16_bn", "googlenet", "resnet18", "resnet34", "resnet50",
            "resnext50_32x4d", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "tinycnn"}


def test_registry_holds_the_classics():
    assert EXPECTED <= set(backbone_names())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_backbone_contract(name):
    torch.manual_seed(0)
    b = create_backbone(name).eval()
    assert len(b.out_channels) == len(b.strides) >= 2
    assert b.strides == sorted(b.strides) and len(set(b.strides)) == len(b.strides)
    for h, w in ((64, 64), (96, 64)):
        for c in (1, 3):
            with torch.no_grad():
                feats = b(torch.randn(2, c, h, w))
            assert [f.shape[1] for f in feats] == b.out_channels
            for f, s in zip(feats, b.strides):
                assert f.shape[0] == 2
                assert tuple(f.shape[-2:]) == (math.ceil(h / s), math.ceil(w / s)), (name, s, f.shape)


def test_grey_stem_accepts_rgb_and_grey():
    b = create_backbone("lenet5", in_channels=1).eval()
    with torch.no_grad():
        grey = b(torch.ones(1, 1, 32, 32))
        rgb = b(torch.ones(1, 3, 32, 32))
    assert torch.allclose(grey[-1], rgb[-1])
