"""`visiontk export`: TorchScript and ONNX files whose outputs match PyTorch's within 1e-4
on random input, for every task, with a metadata sidecar."""
from __future__ import annotations

import importlib.util
import json
import warnings

import pytest
import torch
from helpers import run_cli
from untrained import save_untrained_checkpoint

from visiontk.engine.build import model_from_checkpoint
from visiontk.engine.export import export_checkpoint

SHAPES = ["circle", "square", "triangle"]
MODELS = {
    "classify-tinycnn": ("classify/shapes", ["data.image_size=48", "model.backbone_options.width=4"], SHAPES),
    # TF "SAME" padding computed from the input size: must survive tracing.
    "classify-lite0": ("classify/shapes", ["data.image_size=32", "model.backbone=efficientnet_lite0",
                                           "model.backbone_options={}", "model.head.pool=avg"], SHAPES),
    "detect": ("detect/shapes", ["data.image_size=64", "model.head.S=4", "model.head.width=16",
                                 "model.backbone_options.width=4"], SHAPES),
    "segment-unet": ("segment/shapes-unet", ["data.image_size=48", "model.backbone_options.width=4"], ["background", *SHAPES]),
    "segment-fcn8s": ("segment/shapes-fcn8s", ["data.image_size=48", "model.backbone_options.width=4"], ["background", *SHAPES]),
}
HAS_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript", "onnxruntime"))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    return {name: save_untrained_checkpoint(root / name / "best.pt", recipe, overrides, classes)
            for name, (recipe, overrides, classes) in MODELS.items()}


def _pytorch(ckpt_path, x):
    model, _ = model_from_checkpoint(ckpt_path)
    with torch.no_grad():
        return model.eval()(x)


def _torchscript(path, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(path))
    with torch.no_grad():
        out = module(x)
    return out[0] if isinstance(out, (tuple, list)) else out


def _onnx(path, x):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"images": x.numpy()})[0])


# lite0 (SAME padding computed from the input size) is left to the ONNX test:
# TorchScript's profiling executor takes ~2 s per new batch size on it.
@pytest.mark.parametrize("name", [n for n in MODELS if n != "classify-lite0"])
def test_torchscript_matches_pytorch_with_dynamic_batch(checkpoints, name, tmp_path):
    out = tmp_path / "model.torchscript.pt"
    assert export_checkpoint(checkpoints[name], "torchscript", out, dynamic_batch=True)["max_abs_diff"] <= 1e-4
    meta = json.loads((tmp_path / "model.torchscript.pt.json").read_text())
    ckpt = torch.load(checkpoints[name], weights_only=True)
    h, w = ckpt["input_size"]
    for n in (1, 4):
        x = torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(n))
        expected, got = _pytorch(checkpoints[name], x), _torchscript(out, x)
        assert got.shape == expected.shape
        assert (got - expected).abs().max() <= 1e-4
    assert meta["task"] == ckpt["task"] and meta["classes"] == ckpt["classes"]
    assert meta["input"]["shape"] == ["batch", 3, h, w]
    assert meta["input"]["mean"] == ckpt["mean"] and meta["input"]["std"] == ckpt["std"]
    # The whole preprocessing, so a runtime without visiontk feeds the model the same pixels.
    assert meta["input"]["preprocess"] == ckpt["preprocess"]
    assert meta["input"]["interpolation"].startswith("OpenCV cv2.resize") and meta["input"]["jpeg_draft"] is True
    assert meta["postprocess"]["predict"] == ckpt["predict"]
    assert meta["outputs"][0]["shape"][1:] == list(expected.shape[1:])


@pytest.mark.skipif(not HAS_ONNX, reason="pip install 'visiontk[export]' (onnx, onnxscript, onnxruntime)")
@pytest.mark.parametrize("name", ["classify-lite0", "detect", "segment-unet"])
def test_onnx_matches_pytorch(checkpoints, name, tmp_path):
    out = tmp_path / "model.onnx"
    if name == "detect":  # once through the CLI: the exporter's chatter must stay off stdout
        result = run_cli("export", str(checkpoints[name]), "--format", "onnx", "--dynamic-batch", "--out", str(out))
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("\n") == 1 and json.loads(result.stdout)["max_abs_diff"] <= 1e-4
    else:
        export_checkpoint(checkpoints[name], "onnx", out, dynamic_batch=True)
    ckpt = torch.load(checkpoints[name], weights_only=True)
    h, w = ckpt["input_size"]
    for n in (1, 3):
        x = torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(10 + n))
        expected, got = _pytorch(checkpoints[name], x), _onnx(out, x)
        assert got.shape == expected.shape
        assert (got - expected).abs().max() <= 1e-4


def test_fixed_batch_export_and_refusals(checkpoints, tmp_path):
    ckpt = checkpoints["classify-tinycnn"]
    out = tmp_path / "fixed.torchscript.pt"
    first = run_cli("export", str(ckpt), "--format", "torchscript", "--batch-size", "2", "--out", str(out))
    assert first.returncode == 0, first.stderr
    assert json.loads((tmp_path / "fixed.torchscript.pt.json").read_text())["input"]["shape"][0] == 2
    again = run_cli("export", str(ckpt), "--format", "torchscript", "--out", str(out))
    assert again.returncode == 2 and "exists" in again.stderr
    missing = run_cli("export", str(tmp_path / "nope.pt"), "--format", "onnx")
    assert missing.returncode == 2 and "nope.pt" in missing.stderr
    before = ckpt.read_bytes()
    onto_input = run_cli("export", str(ckpt), "--format", "torchscript", "--out", str(ckpt), "--overwrite")
    assert onto_input.returncode == 2 and "is both the checkpoint and the --out file" in onto_input.stderr
    assert ckpt.read_bytes() == before
