"""Output that scales with the number of classes (issue 13, item 5)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from visiontk.tasks.segment.common import label_map


def test_130_class_upsampling_keeps_the_opencv_path_and_gives_torch_labels(monkeypatch):
    """OpenCV takes at most 128 channels: 130 classes are resized in slices, and the labels are
    exactly those of torch's bilinear resize + argmax. Integer logits and a x4 scale make every
    interpolation weight a power-of-two fraction, so both sums are exact and so are their ties
    (which must go to the first class, as argmax does)."""
    import visiontk.tasks.segment.outputs as outputs

    g = torch.Generator().manual_seed(0)
    logits = torch.randint(0, 12, (130, 6, 8), generator=g).float()
    logits[129, 0, 0] = logits[3, 0, 0] = 40.0  # a tie across slices at the corner: class 3 wins
    logits[128, 5, 7] = 50.0  # a winner in the second slice
    calls = []
    real_resize = outputs.cv2.resize

    def counting_resize(a, *args, **kwargs):
        calls.append(a.shape[2] if a.ndim == 3 else 1)
        return real_resize(a, *args, **kwargs)

    monkeypatch.setattr(outputs.cv2, "resize", counting_resize)
    got = outputs.full_size_labels(logits, (24, 32))
    assert calls == [128, 2]  # the fast path, in two slices; not torch's fallback
    up = F.interpolate(logits[None], size=(24, 32), mode="bilinear", align_corners=False)[0]
    want = label_map(up, 0).numpy()
    assert got.dtype == np.uint8 and got.shape == (24, 32)
    assert np.array_equal(got, want)
    assert got[0, 0] == 3 and got[23, 31] == 128 and (got >= 128).sum() > 0


def _mask_set(root, n_classes: int, per_split: dict[str, int], size: int = 16):
    """A masks-format set: background with one 8 x 8 block of a random class per image."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in per_split.items():
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for i in range(n):
            mask = np.zeros((size, size), np.uint8)
            y, x = rng.integers(0, size - 8, 2)
            mask[y:y + 8, x:x + 8] = rng.integers(1, n_classes)
            image = (rng.random((size, size, 3)) * 40 + mask[..., None] * (200 / n_classes)).astype(np.uint8)
            Image.fromarray(image).save(root / split / "images" / f"{i}.png")
            Image.fromarray(mask).save(root / split / "masks" / f"{i}.png")


def test_22_classes_keep_results_csv_narrow_and_write_per_class_csv(tmp_path):
    """Past 20 classes: results.csv has no per-class columns, per_class.csv has one row per epoch
    and class (its mean over defined classes is the epoch's mIoU), and the epoch line names
    only the worst and best three classes."""
    import csv

    from helpers import run_cli

    names = [f"c{i:02d}" for i in range(22)]
    _mask_set(tmp_path / "data", 22, {"train": 4, "val": 3})
    result = run_cli("segment", "train", "segment/shapes-unet", "--set", f"data.root={tmp_path / 'data'}",
                     "--set", "data.synthetic=null", "--set", "loss.class_weights=null", "--set", f"data.classes={names}",
                     "--set", "data.image_size=16", "--set", "train.epochs=2", "--set", "train.batch_size=4",
                     "--set", "train.warmup_iters=0",
                     "--set", "loss.kind=ce", "--set", "train.lr=0.02", "--set", "output.plots=false",
                     "--project", str(tmp_path / "runs"), "--name", "many")
    assert result.returncode == 0, result.stderr
    run = tmp_path / "runs" / "segment" / "many"
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert not [k for k in rows[0] if k.startswith("val/iou/")] and "val/miou" in rows[0]
    per_class = list(csv.DictReader((run / "per_class.csv").open()))
    assert list(per_class[0]) == ["epoch", "class", "iou", "dice"]
    assert [(r["epoch"], r["class"]) for r in per_class] == [(str(e), n) for e in (1, 2) for n in names]
    for epoch, row in zip(("1", "2"), rows):
        ious = [float(r["iou"]) for r in per_class if r["epoch"] == epoch and r["iou"]]
        assert np.mean(ious) == pytest.approx(float(row["val/miou"]), abs=1e-5)
    assert float(rows[1]["val/miou"]) > 0  # (the background's IoU at least: the mean above is not 0 == 0)
    lines = [line for line in result.stderr.splitlines() if line.startswith("epoch 2/2 ")]
    assert len(lines) == 1 and "| iou worst " in lines[0] and " | best " in lines[0]
    assert lines[0].count("=") < 15, lines[0]  # a few scalars + 3 worst + 3 best, not 22 IoUs


def test_worst_and_best_rank_defined_scores_without_overlap():
    from visiontk.metrics.report import worst_and_best

    scores = {"a": 0.5, "b": None, "c": 0.1, "d": float("nan"), "e": 0.9, "f": 0.3, "g": 0.7, "h": 0.2, "i": 0.8}
    assert worst_and_best(scores) == "worst c=0.1 h=0.2 f=0.3 | best e=0.9 i=0.8 g=0.7"
    assert worst_and_best({"a": 0.5, "c": 0.1, "e": 0.9}) == "worst c=0.1 | best e=0.9 a=0.5"
    assert worst_and_best({"a": 0.5}) == "best a=0.5" and worst_and_best({"a": None}) == ""
