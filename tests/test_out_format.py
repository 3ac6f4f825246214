"""`predict --out NAME` without --format: the file holds what its name says.

Found on real data: `classify predict best.pt photos/ --out preds.csv` wrote
JSON lines into preds.csv, and `detect predict ... --out results.json` wrote
JSON lines (not a JSON document) into results.json.
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from helpers import run_cli
from PIL import Image
from untrained import save_untrained_checkpoint

CLASSES = ["circle", "square", "triangle"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("out-format")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (40 + 8 * k, 56, 3), dtype=np.uint8)).save(images / f"img{k}.png")
    ckpts = {
        "classify": save_untrained_checkpoint(root / "classify.pt", "classify/shapes",
                                              ["data.image_size=32", "model.backbone_options.width=4"], CLASSES),
        "detect": save_untrained_checkpoint(root / "detect.pt", "detect/shapes",
                                            ["data.image_size=64", "model.head.S=4", "model.head.width=8",
                                             "model.backbone_options.width=4"], CLASSES),
    }
    return root, images, ckpts


def _predict(task, ckpt, images, *args):
    return run_cli(task, "predict", str(ckpt), str(images), "--device", "cpu", "--precision", "fp32", *args)


def test_classify_out_csv_writes_csv(setup, tmp_path):
    root, images, ckpts = setup
    out = tmp_path / "preds.csv"
    r = _predict("classify", ckpts["classify"], images, "--out", str(out))
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(out.open()))
    assert [row["path"] for row in rows] == [str(images / f"img{k}.png") for k in range(3)]
    assert all(row["label"] in CLASSES for row in rows)
    # An explicit --format wins over the name; stdout stays jsonl.
    r = _predict("classify", ckpts["classify"], images, "--out", str(tmp_path / "p.csv"), "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["path"] for line in (tmp_path / "p.csv").read_text().splitlines()] == \
        [row["path"] for row in rows]
    r = _predict("classify", ckpts["classify"], images)
    assert [json.loads(line)["label"] for line in r.stdout.splitlines()] == [row["label"] for row in rows]


def test_detect_out_json_is_coco_and_csv_is_refused(setup, tmp_path):
    root, images, ckpts = setup
    out = tmp_path / "results.json"
    r = _predict("detect", ckpts["detect"], images, "--out", str(out), "--conf", "0.0", "--max-det", "2")
    assert r.returncode == 0, r.stderr
    results = json.loads(out.read_text())  # one JSON document
    assert isinstance(results, list) and results
    assert set(results[0]) >= {"image_id", "category_id", "bbox", "score"}
    r = _predict("detect", ckpts["detect"], images, "--out", str(tmp_path / "boxes.csv"))
    assert r.returncode == 2
    assert "boxes.csv" in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "boxes.csv").exists()
