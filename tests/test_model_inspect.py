"""`visiontk model summary|features` and `backbones list`: totals and mult-adds against
hand formulas, feature-map tiles against the activations computed directly."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from helpers import run_cli
from untrained import save_untrained_checkpoint
from visiontk.engine.build import model_from_checkpoint
from visiontk.engine.summary import summarize


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from visiontk.data.synth import synth_classify

    root = tmp_path_factory.mktemp("inspect")
    synth_classify(root / "data", n=6, size=40, seed=3)
    image = sorted((root / "data").rglob("*.png"))[0]
    ckpt = save_untrained_checkpoint(root / "ckpt" / "best.pt", "classify/shapes",
                                     ["data.image_size=32", "model.backbone_options.width=4"],
                                     ["circle", "square", "triangle"])
    return root, image, ckpt


@pytest.mark.parametrize("groups,stride,dilation", [(1, 1, 1), (2, 2, 2)])
def test_mult_adds_of_one_conv_is_the_hand_formula(groups, stride, dilation):
    conv = nn.Conv2d(4, 6, (3, 5), stride=stride, padding=2, dilation=dilation, groups=groups)
    s = summarize(nn.Sequential(conv), (4, 20, 24))
    h_out = (20 + 2 * 2 - dilation * (3 - 1) - 1) // stride + 1
    w_out = (24 + 2 * 2 - dilation * (5 - 1) - 1) // stride + 1
    # Each output value: (C_in / groups) * kh * kw multiply-adds.
    expected = 6 * h_out * w_out * (4 // groups) * 3 * 5
    assert s.rows[0].shape == [6, h_out, w_out]
    assert s.rows[0].mult_adds == s.mult_adds == expected
    assert s.params == s.rows[0].params == 6 * (4 // groups) * 15 + 6


@pytest.fixture(scope="module")
def meta_resnet18():
    """Built on the meta device: no weights initialised (the fx trace is the cost)."""
    from visiontk.backbones.registry import create_backbone

    with torch.device("meta"):
        return create_backbone("resnet18")


def test_totals_are_the_models_own(meta_resnet18):
    backbone = meta_resnet18
    params = sum(p.numel() for p in backbone.parameters())
    s = summarize(backbone, (3, 64, 64), batch_size=8)
    assert s.params == params
    # One row per layer: each parameter in exactly one row; the convolutions hold
    # all the multiply-adds.
    assert sum(r.params for r in s.rows) == s.params
    assert sum(r.mult_adds for r in s.rows if r.kind == "Conv2d") == s.mult_adds
    blocks = summarize(backbone, (3, 64, 64), depth=3)
    assert [r.name for r in blocks.rows if r.kind == "BasicBlock"] == [f"body.layer{i}.{j}" for i in range(1, 5)
                                                                       for j in range(2)]
    assert sum(r.params for r in blocks.rows) == s.params and blocks.mult_adds == s.mult_adds
    # The activations part of the memory estimate grows with the batch, the weights part does not.
    double = summarize(backbone, (3, 64, 64), batch_size=16)
    assert double.memory["activations_fwd_bwd"] == 2 * s.memory["activations_fwd_bwd"] > 0
    assert double.memory["params"] == s.memory["params"] == 4 * s.params


def test_model_summary_of_a_checkpoint(tiny):
    _, _, ckpt = tiny
    result = run_cli("model", "summary", ckpt, "--json", "--depth", "4")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    model, _ = model_from_checkpoint(ckpt)
    assert doc["params"] == sum(p.numel() for p in model.parameters())
    assert doc["input_shape"] == [3, 32, 32]
    names = [r["name"] for r in doc["layers"]]
    assert [n for n in names if n.startswith("backbone.body.stages.")] == [f"backbone.body.stages.{i}" for i in range(5)]
    # tinycnn: five stages of two 3x3 convs, the first of stride 2: RF 3+2 = 5 (j 2), then 5+4+4=... by Araujo.
    rf, j = 1, 1
    expected = []
    for _ in range(5):
        rf, j = rf + 2 * j, j * 2
        rf += 2 * j
        expected.append(rf)
    assert [r["rf"][0] for r in doc["layers"] if r["name"].startswith("backbone.body.stages.")] == expected


def test_feature_tiles_are_the_normalised_activations(tiny, tmp_path):
    _, image, ckpt = tiny
    layer = "backbone.body.stages.1.0.0"  # a convolution: no channel is constant (a ReLU's may be)
    result = run_cli("model", "features", ckpt, image, "--layer", layer, "--out", tmp_path / "maps")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    # The activation computed independently: a forward hook on the stage, the checkpoint's preprocessing.
    from visiontk.data.preprocess import Preprocess

    model, meta = model_from_checkpoint(ckpt)
    captured = {}
    model.get_submodule(layer).register_forward_hook(lambda m, i, o: captured.setdefault("act", o))
    with torch.no_grad():
        model(Preprocess.from_checkpoint(meta)(image)[None])
    act = captured["act"][0].numpy()
    c, h, w = act.shape
    assert record["channels"] == c == 8 and record["shape"] == [c, h, w]
    png = np.asarray(Image.open(record["png"]))
    rows, cols = record["grid"]
    th, tw = record["tile"]
    scale, gap = record["scale"], record["gap"]
    assert rows * cols >= c > (rows - 1) * cols and (th, tw) == (h * scale, w * scale)
    assert png.shape == (rows * (th + gap) - gap, cols * (tw + gap) - gap)
    for ch in range(c):
        r, q = divmod(ch, cols)
        tile = png[r * (th + gap): r * (th + gap) + th, q * (tw + gap): q * (tw + gap) + tw]
        a = act[ch].astype(np.float64)
        assert a.max() > a.min()
        norm = np.rint((a - a.min()) / (a.max() - a.min()) * 255)
        assert np.array_equal(tile[::scale, ::scale], norm)
        assert np.array_equal(tile, np.kron(norm, np.ones((scale, scale))))


def test_unknown_layer_is_one_line_with_close_names(tiny, tmp_path):
    _, image, ckpt = tiny
    result = run_cli("model", "features", ckpt, image, "--layer", "backbone.body.stage.1", "--out", tmp_path / "m")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'backbone.body.stage.1' is not a layer" in lines[0], result.stderr
    assert "backbone.body.stages.1" in lines[0]
    assert not (tmp_path / "m").exists()


def test_backbones_list_has_the_receptive_field_and_prints_whole(monkeypatch):
    from visiontk.backbones import registry
    from visiontk.cli import app

    monkeypatch.setattr(registry, "backbone_names", lambda: ["alexnet", "lenet5"])
    result = CliRunner().invoke(app, ["backbones", "list", "--json"])
    assert result.exit_code == 0, result.output
    # AlexNet: conv 11/4 -> 11 (j 4); pool 3/2 -> 19 (j 8); conv 5 -> 51; pool -> 67 (j 16);
    # three 3x3 convs -> 163; pool -> 195. LeNet-5: 32 (test_receptive_field.py).
    assert [json.loads(line)["receptive_field"] for line in result.stdout.splitlines()] == ["195", "32"]
    # Not a terminal: each row on one line, every cell whole, whatever the width.
    monkeypatch.setenv("COLUMNS", "40")
    result = CliRunner().invoke(app, ["backbones", "list"])
    rows = [line for line in result.stdout.splitlines() if "alexnet" in line or "lenet5" in line]
    assert len(rows) == 2
    assert "AlexNet (Krizhevsky 2012) with batch norm in place of LRN" in rows[0] and " 195 " in rows[0]
    assert "LeNet-5 (LeCun 1998): tanh, average-pool subsampling" in rows[1] and " 32 " in rows[1]


def test_a_block_of_a_torchvision_graph_is_a_layer_too(meta_resnet18, one_thread):
    # The blocks of fx feature extractors are never called (no hook can see them): their
    # activation comes from the trace, and must be what the extractor itself returns.
    import copy

    from visiontk.engine.features import layer_activation

    backbone = copy.deepcopy(meta_resnet18).to_empty(device="cpu")
    torch.manual_seed(0)
    for name, t in [*backbone.named_parameters(), *backbone.named_buffers()]:
        if t.is_floating_point():
            with torch.no_grad():
                t.uniform_(0.5, 1.5) if "var" in name else t.normal_(0, 0.1)
    backbone.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        feats = backbone(x)
    for i, layer in ((1, "body.layer1"), (2, "body.layer2")):
        assert torch.equal(layer_activation(backbone, x, layer), feats[i])
