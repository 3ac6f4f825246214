"""Pretrained weights: torchvision's offline cache, the missing-weights error, `weights
list|check`, visiontk checkpoints as a starting point, and the weights' normalisation."""
from __future__ import annotations

import hashlib
import json

import pytest
import torch
import torchvision
from helpers import run_cli

from visiontk.backbones.pretrained import load_pretrained, resolve_pretrained
from visiontk.backbones.registry import create_backbone
from visiontk.errors import UserError

RESNET18_FILE = "resnet18-f37072fd.pth"  # torchvision's name for ResNet18_Weights.IMAGENET1K_V1


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    home = tmp_path / "torch-home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


@pytest.fixture
def cached_resnet18(torch_home):
    """A torchvision-format ResNet-18 state dict (random weights) where torchvision caches it."""
    torch.manual_seed(0)
    reference = torchvision.models.resnet18().eval()
    # Non-trivial batch-norm statistics, so that loading them is checked too.
    for m in reference.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    path = torch_home / "hub" / "checkpoints" / RESNET18_FILE
    torch.save(reference.state_dict(), path)
    return reference, path


def _resnet_trunk(model, x):
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    return model.layer4(model.layer3(model.layer2(model.layer1(x))))


def test_imagenet_weights_are_read_from_the_torch_cache(cached_resnet18):
    reference, path = cached_resnet18
    ref = resolve_pretrained("resnet18", "imagenet")
    assert ref["file"] == str(path) and ref["name"] == "IMAGENET1K_V1"
    backbone = create_backbone("resnet18").eval()
    load_pretrained(backbone, "resnet18", "imagenet")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(backbone(x)[-1], _resnet_trunk(reference, x), atol=1e-5)


def test_weights_name_and_the_rebuilt_imagenet_classifier_match_torchvision(cached_resnet18):
    from visiontk.backbones.imagenet import imagenet_classifier

    reference, _ = cached_resnet18
    model, info = imagenet_classifier("resnet18", "IMAGENET1K_V1")
    assert len(info["categories"]) == 1000 and info["input_size"] == [224, 224]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=1e-5)


def test_build_model_loads_cached_weights_for_a_task_model(cached_resnet18, tmp_path):
    from visiontk.engine.build import build_model
    from visiontk.tasks.recipes import recipe_from_dict

    reference, _ = cached_resnet18
    recipe = recipe_from_dict({"task": "classify", "data": {"root": str(tmp_path)},
                               "model": {"backbone": "resnet18", "pretrained": "imagenet"}})
    model = build_model(recipe, 2).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model.backbone(x)[-1], _resnet_trunk(reference, x), atol=1e-5)
    assert model(x).shape == (1, 2)  # a 2-class head, newly initialised


def test_googlenet_weights_bring_their_own_input_scaling(torch_home):
    # torchvision's GoogLeNet weights expect transform_input=True, i.e. (x - 0.5) / 0.5.
    from visiontk.backbones.imagenet import imagenet_classifier

    torch.manual_seed(0)
    reference = torchvision.models.googlenet(weights=None, aux_logits=True, transform_input=True, init_weights=True).eval()
    weights = torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1
    torch.save(reference.state_dict(), torch_home / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[1])
    model, info = imagenet_classifier("googlenet")
    assert info["mean"] == [0.5] * 3 and info["std"] == [0.5] * 3
    pixels = torch.rand(2, 3, 64, 64)
    imagenet = (pixels - torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    ours = (pixels - 0.5) / 0.5
    with torch.no_grad():
        assert torch.allclose(model(ours), reference(imagenet), atol=1e-4)


def test_missing_weights_error_names_file_folder_and_url(torch_home, tmp_path):
    from visiontk.data.synth import synth_classify

    synth_classify(tmp_path / "data", n=12, size=32, seed=0)
    result = run_cli("classify", "train", "classify/imagefolder", "--set", f"data.root={tmp_path / 'data'}",
                     "--set", "model.pretrained=imagenet", "--set", "train.workers=0", "--project", str(tmp_path / "runs"))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1, result.stderr
    folder = torch_home / "hub" / "checkpoints"
    assert f"put {RESNET18_FILE} into {folder} " in error[0]
    assert f"https://download.pytorch.org/models/{RESNET18_FILE}" in error[0]


def test_unknown_weights_name_lists_the_known_ones(torch_home):
    with pytest.raises(UserError, match="IMAGENET1K_V1.*IMAGENET1K_V2"):
        resolve_pretrained("resnet50", "IMAGENET1K_V9")
    with pytest.raises(UserError, match="no ImageNet weights"):
        resolve_pretrained("tinycnn", "imagenet")
    assert resolve_pretrained("resnet50", "IMAGENET1K_V2")["file"].endswith("resnet50-11ad3fa6.pth")


def test_weights_list_and_check(cached_resnet18, torch_home):
    listed = run_cli("weights", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["backbone"]: r for r in map(json.loads, listed.stdout.splitlines())}
    assert rows["resnet18"]["present"] is True and rows["resnet18"]["file"] == RESNET18_FILE
    assert rows["resnet50"]["present"] is False and rows["resnet50"]["weights"] == "IMAGENET1K_V2"
    assert "tinycnn" not in rows
    # A file whose content matches the hash prefix in its name, next to the random
    # resnet18 file whose content does not.
    payload = b"visiontk weights check\n"
    digest = hashlib.sha256(payload).hexdigest()
    good = torch_home / "hub" / "checkpoints" / f"tiny-{digest[:8]}.pth"
    good.write_bytes(payload)
    checked = run_cli("weights", "check", "--json")
    assert checked.returncode == 1, checked.stderr
    status = {json.loads(line)["file"].rsplit("/", 1)[1]: json.loads(line)["status"] for line in checked.stdout.splitlines()}
    assert status[good.name] == "ok"
    assert status[RESNET18_FILE].startswith("corrupt")
    assert RESNET18_FILE in checked.stderr
    only_good = run_cli("weights", "check", str(good))
    assert only_good.returncode == 0, only_good.stderr


def test_visiontk_checkpoint_as_pretrained_keeps_head_only_for_the_same_classes(tmp_path):
    from visiontk.data.synth import synth_classify
    from visiontk.engine.build import build_model
    from visiontk.backbones.normalization import resolve_normalization
    from visiontk.tasks.recipes import recipe_from_dict

    data = tmp_path / "data"
    synth_classify(data, n=48, size=32, seed=2)
    result = run_cli("classify", "train", "classify/shapes", "--set", f"data.root={data}", "--set", "data.image_size=32",
                     "--set", "train.epochs=1", "--set", "model.backbone_options.width=4", "--set", "data.mean=[0.4,0.4,0.4]",
                     "--set", "output.plots=false", "--project", str(tmp_path / "runs"), "--name", "src")
    assert result.returncode == 0, result.stderr
    src = tmp_path / "runs" / "classify" / "src" / "last.pt"
    saved = torch.load(src, weights_only=True)["model"]
    raw = {"task": "classify", "data": {"root": str(data)},
           "model": {"backbone": "tinycnn", "backbone_options": {"width": 4}, "pretrained": str(src),
                     "head": {"pool": "max"}}}
    recipe = recipe_from_dict(raw)
    # The source run's normalisation comes with its weights.
    assert resolve_normalization(recipe) == {"mean": [0.4] * 3, "std": [0.25] * 3}
    same = build_model(recipe, 3, classes=["circle", "square", "triangle"]).state_dict()
    other = build_model(recipe, 2, classes=["a", "b"]).state_dict()
    for k, v in saved.items():
        assert torch.equal(same[k], v), k
        if k.startswith("backbone."):
            assert torch.equal(other[k], v), k
    assert other["head.fc.2.weight"].shape[0] == 2
