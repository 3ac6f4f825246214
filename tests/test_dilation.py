"""model.output_stride: the ResNet family with its last stages dilated, and the heads that read it.

No training here: the mechanics are checked against independent references
(the undilated network sampled every d pixels; torchvision's own
`replace_stride_with_dilation` for the Bottleneck ResNets).
"""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from visiontk.backbones.pretrained import load_backbone_weights
from visiontk.backbones.registry import create_backbone
from visiontk.errors import UserError
from visiontk.tasks.segment.model import SegmentationModel, build_decoder

# Strides and channels of resnet18 at each output stride, and the side of each level at 64 px.
CONTRACT = {
    32: ([2, 4, 8, 16, 32], [32, 16, 8, 4, 2]),
    16: ([2, 4, 8, 16, 16], [32, 16, 8, 4, 4]),
    8: ([2, 4, 8, 8, 8], [32, 16, 8, 8, 8]),
}
RESNET18_CHANNELS = [64, 64, 128, 256, 512]


def _randomise_batch_norm(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics and affine terms, so eval-mode BN is not close to the identity."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.fixture(scope="module")
def resnet18s() -> dict[int, nn.Module]:
    """resnet18 at output strides 32, 16, 8, all with the weights of the first (eval mode)."""
    torch.manual_seed(0)
    plain = create_backbone("resnet18").eval()
    _randomise_batch_norm(plain)
    out = {32: plain}
    for os_ in (16, 8):
        b = create_backbone("resnet18", output_stride=os_).eval()
        b.load_state_dict(plain.state_dict())  # strict: dilation changes no key and no shape
        out[os_] = b
    return out


@pytest.mark.parametrize("output_stride", [32, 16, 8])
def test_resnet18_channel_and_stride_contract(resnet18s, output_stride, one_thread):
    b = resnet18s[output_stride]
    strides, sides = CONTRACT[output_stride]
    assert b.strides == strides and b.out_channels == RESNET18_CHANNELS
    with torch.no_grad():
        feats = b(torch.zeros(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [(c, s, s) for c, s in zip(RESNET18_CHANNELS, sides)]


def test_pretrained_weights_map_to_the_same_keys_at_every_output_stride(resnet18s, one_thread):
    # A torchvision state dict (what model.pretrained: imagenet reads) loads into every dilated backbone.
    tv_state = torchvision.models.resnet18(weights=None).state_dict()
    keys = set(resnet18s[32].state_dict())
    for output_stride in (16, 8):
        b = resnet18s[output_stride]
        mapped = load_backbone_weights(b, tv_state, "torchvision resnet18")
        assert set(mapped) == set(b.state_dict()) == keys
        assert all(torch.equal(b.state_dict()[k], v) for k, v in mapped.items())
        b.load_state_dict(resnet18s[32].state_dict())  # back to the fixture's weights


def test_dilated_resnet18_is_the_a_trous_form_of_the_plain_one(resnet18s, one_thread):
    """Same weights: the dilated feature sampled every d pixels is the undilated feature.

    (torchvision's BasicBlock refuses dilation, so resnet18 has no torchvision
    reference; this identity is the definition of the "a trous" algorithm.)
    """
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain, os16, os8 = (resnet18s[s](x) for s in (32, 16, 8))
    for i in range(3):  # the stem, layer1 and layer2 are untouched at stride 16; stem, layer1 at 8
        torch.testing.assert_close(os16[i], plain[i], rtol=0, atol=0)
    torch.testing.assert_close(os8[2], plain[2], rtol=0, atol=0)
    torch.testing.assert_close(os16[4][..., ::2, ::2], plain[4], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(os8[3][..., ::2, ::2], plain[3], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(os8[4][..., ::4, ::4], plain[4], rtol=1e-5, atol=1e-5)
    assert os8[4].shape[-1] == 8 and plain[4].abs().mean() > 0.1
    # The pixels between the samples are new information, not copies.
    assert not torch.allclose(os8[4][..., 1::4, 1::4], plain[4], atol=1e-2)


def test_bottleneck_resnet_matches_torchvisions_replace_stride_with_dilation(one_thread):
    torch.manual_seed(0)
    ours = create_backbone("resnet50", output_stride=8).eval()
    _randomise_batch_norm(ours)
    tv = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=[False, True, True]).eval()
    result = tv.load_state_dict({k[len("body."):]: v for k, v in ours.state_dict().items()}, strict=False)
    assert result.missing_keys == ["fc.weight", "fc.bias"] and not result.unexpected_keys
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        deepest = ours(x)[-1]
        ref = tv.layer4(tv.layer3(tv.layer2(tv.layer1(tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))))))
    assert deepest.shape == ref.shape == (1, 2048, 4, 4)
    torch.testing.assert_close(deepest, ref, rtol=1e-5, atol=1e-5)


def test_output_stride_is_refused_where_it_cannot_work(tmp_path):
    with pytest.raises(UserError, match=r"^model\.output_stride: backbone 'tinycnn' has fixed strides; "
                                        r"output_stride works with resnet18, resnet34, resnet50, resnext50_32x4d$"):
        create_backbone("tinycnn", output_stride=8)
    with pytest.raises(UserError, match=r"^model\.output_stride: backbone 'resnet18' takes 8 \| 16 \| 32, got 4$"):
        create_backbone("resnet18", output_stride=4)

    from visiontk.engine.build import checkpoint_meta
    from visiontk.engine.checkpoint_meta import validate_checkpoint
    from visiontk.tasks.recipes import load_recipe

    with pytest.raises(UserError, match=r"'model\.output_stride' must be 8, 16 or 32, got 4"):
        load_recipe("segment/membrane-fcn-os8", ["model.output_stride=4"])
    with pytest.raises(UserError, match=r"'model\.backbone_options\.output_stride' belongs in model\.output_stride$"):
        load_recipe("segment/membrane-fcn-os8", ["model.backbone_options.output_stride=8"])
    recipe = load_recipe("segment/membrane-fcn-os8")
    assert recipe.model.output_stride == 8
    # The checkpoint keeps the recipe (predict rebuilds the dilated model from it), validated on load.
    ckpt = {"format": "visiontk-checkpoint", **checkpoint_meta(recipe, ["membrane", "cell"])}
    assert validate_checkpoint(ckpt, tmp_path / "best.pt").model.output_stride == 8
    ckpt["recipe"]["model"]["output_stride"] = 12
    with pytest.raises(UserError, match=r"best\.pt \(recipe\): 'model\.output_stride' must be 8, 16 or 32, got 12"):
        validate_checkpoint(ckpt, tmp_path / "best.pt")


@pytest.mark.parametrize("output_stride", [32, 16, 8])
def test_fcn_and_unet_give_full_size_logits_at_each_output_stride(resnet18s, output_stride, one_thread):
    b = resnet18s[output_stride]
    fcns = {32: ["fcn32s", "fcn16s", "fcn8s"], 16: ["fcn16s", "fcn8s"], 8: ["fcn8s"]}[output_stride]
    for name in [*fcns, "unet"]:
        decoder = build_decoder(name, b.out_channels, b.strides, 3)
        model = SegmentationModel(b, decoder).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 3, 72, 56)).shape == (1, 3, 72, 56), name
        # Every learnt upsampling step doubles the size: none runs at x1 between equal strides.
        for m in decoder.modules():
            if isinstance(m, nn.ConvTranspose2d):
                assert m.stride[0] >= 2, name
    # Where features share the deepest stride, U-Net starts from the deepest of them (layer4)
    # and takes each skip from the last feature of its stride; FCN-8s adds them all.
    unet = build_decoder("unet", b.out_channels, b.strides, 3)
    fcn8s = build_decoder("fcn8s", b.out_channels, b.strides, 3)
    assert unet.deepest_index == 4
    assert unet.stage_strides == [s for s in (16, 8, 4, 2) if s < output_stride]
    assert [b.strides[i] for i in unet.skip_indices] == unet.stage_strides
    assert fcn8s.feature_indices == [4, 3, 2]
    assert len(fcn8s.up2) == {32: 2, 16: 1, 8: 0}[output_stride]
    if output_stride < 32:
        with pytest.raises(UserError, match=rf"FCN-32s needs a backbone feature at stride >= 32; backbone strides "
                                            rf"are \[2, 4, 8, {output_stride}, {output_stride}\]: use fcn{output_stride}s"):
            build_decoder("fcn32s", b.out_channels, b.strides, 3)


def test_fcn8s_at_stride_8_scores_layer2_to_layer4_without_upsampling_between(resnet18s, one_thread):
    b = resnet18s[8]
    decoder = build_decoder("fcn8s", b.out_channels, b.strides, 2)
    for layer in decoder.score:
        nn.init.normal_(layer.weight)
    with torch.no_grad():
        feats = b(torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3)))
        expected = decoder.final_up(sum(decoder.score[k](feats[i]) for k, i in enumerate((4, 3, 2))))
        torch.testing.assert_close(decoder(feats), expected)


@pytest.mark.parametrize("output_stride", [32, 16, 8])
def test_yolo_grid_follows_the_output_stride(resnet18s, output_stride, one_thread):
    from visiontk.tasks.recipes import recipe_from_dict
    from visiontk.tasks.registry import get_task

    def recipe(S):
        return recipe_from_dict({
            "task": "detect", "model": {"backbone": "resnet18", "output_stride": output_stride,
                                        "head": {"S": S, "width": 8, "depth": 1}},
            "data": {"format": "coco", "root": "x", "image_size": 64},
        })

    task, b = get_task("detect"), resnet18s[output_stride]
    model = task.build_model(recipe("auto"), b, 3).eval()
    S = 64 // output_stride
    assert model.head.S == S and model.head.feature_index == 4
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, S, S, 2 * 5 + 3)
    # The loss encodes targets on the grid the head built.
    targets = [{"boxes": torch.tensor([[0.5, 0.5, 0.3, 0.3]]), "labels": torch.tensor([1])}] * 2
    loss, _ = task.build_loss(recipe("auto"), 3)(out, targets)
    assert torch.isfinite(loss)
    # A fixed S still works: the deepest map is pooled to it.
    fixed = task.build_model(recipe(2), b, 3).eval()
    assert fixed.head.feature_index == 4
    with torch.no_grad():
        assert fixed(torch.randn(1, 3, 64, 64)).shape == (1, 2, 2, 13)
