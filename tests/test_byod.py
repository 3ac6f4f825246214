"""Bring your own data set (issue 13): Ultralytics yamls by any name, COCO ids kept, sparse mask ids.

Tiny sets generated in tmp, tiny models (tinycnn width 4, 64 px), 1-2 epochs:
these check that the user's own ids travel from the files through training
into what predict writes, not what the models learn.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import run_cli
from PIL import Image

from visiontk.data.formats.yolo import data_yaml_path, read_yolo
from visiontk.errors import UserError

TINY_DETECT = {"backbone": "tinycnn", "backbone_options": {"width": 4}, "head": {"S": 4, "width": 8, "depth": 1}}
TRAIN = {"epochs": 1, "batch_size": 4, "lr": 0.001, "schedule": "none", "optimizer": "adamw"}


def _recipe(path: Path, body: dict) -> Path:
    path.write_text(yaml.safe_dump(body), encoding="utf-8")
    return path


def _png(path: Path, size: int = 64, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def _train(task: str, recipe: Path, runs: Path, name: str = "t"):
    res = run_cli(task, "train", str(recipe), "--project", str(runs), "--name", name, "--device", "cpu")
    assert res.returncode == 0, res.stderr
    return runs / task / name / "best.pt"


# --------------------------------------------------------------- 1. Ultralytics yaml by any name


def _ultralytics_set(root: Path, n: int = 6) -> Path:
    """images/{train,val} + labels/; val given as a .txt list; names as a map; yaml named config.yaml."""
    for split in ("train", "val"):
        for i in range(n):
            _png(root / "images" / split / f"{i:03d}.png", seed=i)
            # class 1 ('dog') in the left half, class 0 ('cat') only in image 0
            lines = ["1 0.25 0.5 0.3 0.4"] + (["0 0.75 0.5 0.2 0.2"] if i == 0 else [])
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split / f"{i:03d}.txt").write_text("\n".join(lines) + "\n")
    (root / "val.txt").write_text("".join(f"./images/val/{i:03d}.png\n" for i in range(n)))
    cfg = root / "cfg" / "config.yaml"
    cfg.parent.mkdir()
    cfg.write_text("path: ..\ntrain: images/train\nval: val.txt\nnames:\n  0: cat\n  1: dog\n")
    return cfg


def test_ultralytics_yaml_by_any_name_reads_folders_and_image_lists(tmp_path):
    cfg = _ultralytics_set(tmp_path)
    assert data_yaml_path(cfg, "data.yaml") == cfg  # data.root is the yaml itself
    for split in ("train", "val"):
        found = read_yolo(cfg, split)
        assert found.classes == ["cat", "dog"] and found.category_ids == [0, 1]
        assert len(found.records) == 6 and found.report.total == 0
        first = next(r for r in found.records if r.image.name == "000.png")
        assert first.labels.tolist() == [1, 0]
        np.testing.assert_allclose(first.boxes[0], [(0.25 - 0.15) * 64, (0.5 - 0.2) * 64, (0.25 + 0.15) * 64,
                                                    (0.5 + 0.2) * 64], atol=1e-3)


def test_missing_data_yaml_names_the_file_and_the_key(tmp_path):
    with pytest.raises(UserError) as e:
        data_yaml_path(tmp_path, "mine.yaml")
    text = str(e.value)
    assert "mine.yaml" in text and "data.options.data_yaml" in text and "data.root may" in text
    assert "\n" not in text


def test_detect_trains_from_a_yaml_named_config(tmp_path):
    cfg = _ultralytics_set(tmp_path / "set")
    recipe = _recipe(tmp_path / "r.yaml", {"task": "detect", "model": TINY_DETECT, "train": TRAIN,
                                           "data": {"format": "yolo", "root": str(cfg), "image_size": 64}})
    best = _train("detect", recipe, tmp_path / "runs")
    ckpt = torch.load(best, weights_only=True)
    assert ckpt["classes"] == ["cat", "dog"]
    res = run_cli("detect", "eval", str(best), "--json", "--device", "cpu")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["images"] == 6 and out["support"] == [1, 6]  # the labels read from the val list

    missing = _recipe(tmp_path / "m.yaml", {"task": "detect", "model": TINY_DETECT, "train": TRAIN,
                                            "data": {"format": "yolo", "root": str(tmp_path / "set"),
                                                     "options": {"data_yaml": "nope.yaml"}}})
    res = run_cli("detect", "train", str(missing), "--project", str(tmp_path / "runs"), "--device", "cpu")
    assert res.returncode != 0
    assert "nope.yaml" in res.stderr and "data.options.data_yaml" in res.stderr
