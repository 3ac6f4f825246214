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


# --------------------------------------------------------------- 2. COCO ids kept

CATEGORIES = [{"id": 1, "name": "person"}, {"id": 7, "name": "train"}, {"id": 90, "name": "toothbrush"}]


def _coco_set(root: Path, n: int = 6) -> None:
    """Non-contiguous category ids (1, 7, 90) and image ids (139, 285, ...), file names that are not numbers."""
    for split in ("train", "val"):
        images, annotations = [], []
        for i in range(n):
            name = f"{split}/pic_{i}.png"
            _png(root / "images" / name, seed=i)
            image_id = 139 + 146 * i
            images.append({"id": image_id, "file_name": name.split("/", 1)[1], "width": 64, "height": 64})
            for k, cat in enumerate(CATEGORIES[: 1 + i % 3]):
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat["id"],
                                    "bbox": [4 + 18 * k, 8, 14, 20], "area": 280, "iscrowd": 0})
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(
            {"images": images, "annotations": annotations, "categories": CATEGORIES}))


def test_coco_ids_travel_from_the_files_to_the_results(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    root = tmp_path / "coco"
    _coco_set(root)
    recipe = _recipe(tmp_path / "r.yaml", {"task": "detect", "model": TINY_DETECT, "train": TRAIN,
                                           "data": {"format": "coco", "root": str(root), "image_size": 64}})
    best = _train("detect", recipe, tmp_path / "runs")
    ckpt = torch.load(best, weights_only=True)
    assert ckpt["classes"] == ["person", "train", "toothbrush"] and ckpt["category_ids"] == [1, 7, 90]

    gt = root / "annotations" / "instances_val.json"
    out = tmp_path / "results.json"
    images = sorted((root / "images" / "val").glob("*.png"))
    res = run_cli("detect", "predict", str(best), *map(str, images), "--format", "coco", "--conf", "0.001",
                  "--coco-images-from", str(gt), "--out", str(out), "--device", "cpu")
    assert res.returncode == 0, res.stderr
    results = json.loads(out.read_text())
    assert results, "the untrained model still scores boxes above 0.001"
    truth = json.loads(gt.read_text())
    assert {r["category_id"] for r in results} <= {c["id"] for c in CATEGORIES}
    assert {r["image_id"] for r in results} <= {i["id"] for i in truth["images"]}
    coco_gt = COCO(str(gt))
    evaluation = COCOeval(coco_gt, coco_gt.loadRes(str(out)), "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()

    # The set's own images need no flag: the checkpoint's recipe says where its COCO files are.
    res = run_cli("detect", "predict", str(best), *map(str, images), "--format", "coco", "--conf", "0.001",
                  "--device", "cpu")
    assert res.returncode == 0, res.stderr
    by_name = {i["file_name"]: i["id"] for i in truth["images"]}
    assert {(Path(r["file_name"]).name, r["image_id"]) for r in json.loads(res.stdout)} <= set(by_name.items())
    assert "position" not in res.stderr

    res = run_cli("detect", "eval", str(best), "--json", "--device", "cpu")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["classes"] == ["person", "train", "toothbrush"]

    # Without the annotation file: numeric file names are the ids, else the position (and a warning says so).
    numeric = tmp_path / "numeric"
    numeric.mkdir()
    (numeric / "000000285.png").write_bytes(images[1].read_bytes())
    (numeric / "photo.png").write_bytes(images[2].read_bytes())
    res = run_cli("detect", "predict", str(best), str(numeric / "000000285.png"), str(numeric / "photo.png"),
                  "--format", "coco", "--conf", "0.001", "--device", "cpu")
    assert res.returncode == 0, res.stderr
    ids = {Path(r["file_name"]).name: r["image_id"] for r in json.loads(res.stdout)}
    assert ids == {"000000285.png": 285, "photo.png": 2}
    assert "position" in res.stderr


# --------------------------------------------------------------- 3. sparse mask ids

SPARSE = {0: "background", 7: "road", 200: "car"}


def _sparse_masks(root: Path, n: int = 6, size: int = 48) -> None:
    """Masks whose values are the set's own ids 0 / 7 / 200, plus a value 99 no class map lists."""
    for split in ("train", "val"):
        for i in range(n):
            _png(root / split / "images" / f"{i}.png", size=size, seed=i)
            mask = np.zeros((size, size), np.uint8)
            mask[: size // 2] = 7
            mask[size // 2 :, : size // 2] = 200
            mask[0, 0] = 99
            (root / split / "masks").mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(root / split / "masks" / f"{i}.png")


@pytest.mark.parametrize("given", ["yaml", "recipe"])
def test_sparse_mask_ids_train_and_predict_in_the_sets_own_ids(tmp_path, given):
    root = tmp_path / "set"
    _sparse_masks(root)
    data = {"format": "masks", "root": str(root), "image_size": 48}
    if given == "yaml":
        (root / "dataset.yaml").write_text("names:\n" + "".join(f"  {k}: {v}\n" for k, v in SPARSE.items()))
        data["options"] = {"data_yaml": "dataset.yaml"}
    else:
        data["classes"] = SPARSE
    recipe = _recipe(tmp_path / "r.yaml", {
        "task": "segment", "data": data, "train": {**TRAIN, "epochs": 2, "lr": 0.01},
        "model": {"backbone": "tinycnn", "backbone_options": {"width": 4}, "head": {"decoder": "fcn32s"}}})
    res = run_cli("segment", "train", str(recipe), "--project", str(tmp_path / "runs"), "--name", "t",
                  "--device", "cpu")
    assert res.returncode == 0, res.stderr
    # one warning for the whole split, counting the value no class map lists
    assert "mask values 99 (6 px in 6 masks) are not in the class map: ignored (255)" in res.stderr
    best = tmp_path / "runs" / "segment" / "t" / "best.pt"
    ckpt = torch.load(best, weights_only=True)
    assert ckpt["classes"] == list(SPARSE.values()) and ckpt["category_ids"] == list(SPARSE)

    images = sorted((root / "val" / "images").glob("*.png"))
    for values, allowed in (("ids", set(SPARSE)), ("index", {0, 1, 2})):
        out = tmp_path / f"pred-{values}"
        res = run_cli("segment", "predict", str(best), *map(str, images), "--out-dir", str(out),
                      "--mask-values", values, "--device", "cpu")
        assert res.returncode == 0, res.stderr
        written = set()
        for record in map(json.loads, res.stdout.splitlines()):
            written |= set(np.unique(np.array(Image.open(record["mask"]))).tolist())
        assert written and written <= allowed, (values, written)

    res = run_cli("segment", "eval", str(best), "--json", "--device", "cpu")
    assert res.returncode == 0, res.stderr
    assert set(json.loads(res.stdout)["iou"]) == set(SPARSE.values())


def test_image_ids_match_the_longest_file_name_then_numbers_then_positions(capsys):
    from visiontk.tasks.detect.writers import ImageIds

    ids = ImageIds({"val/a.jpg": 5, "train/a.jpg": 6, "b.jpg": 7}, "gt.json")
    assert ids("/data/val/a.jpg", 1) == 5 and ids("/x/train/a.jpg", 2) == 6
    assert ids("/elsewhere/b.jpg", 3) == 7  # a unique bare name matches
    assert ids("/elsewhere/a.jpg", 4) == 4  # 'a.jpg' is ambiguous: neither number nor id -> position
    assert ids("/x/000000139.jpg", 5) == 139
    ids.summarise()
    err = capsys.readouterr().err
    assert "2 images are not in gt.json" in err and "1 image has neither" in err and "image_id is its position" in err


def test_130_sparse_ids_map_to_contiguous_indices(tmp_path, capsys):
    from visiontk.tasks.recipes import recipe_from_dict
    from visiontk.tasks.segment.formats import read_records
    from visiontk.tasks.segment.readers import load_mask

    ids = sorted({round(i * 200 / 129) for i in range(130)})
    assert len(ids) == 130 and ids[-1] == 200
    for split in ("train", "val"):
        _png(tmp_path / split / "images" / "a.png", size=16)
        mask = np.array(ids[:128] + [201, 255] * 64, np.uint8)[:256].reshape(16, 16)
        (tmp_path / split / "masks").mkdir(parents=True)
        Image.fromarray(mask).save(tmp_path / split / "masks" / "a.png")
    recipe = recipe_from_dict({"task": "segment", "data": {"format": "masks", "root": str(tmp_path),
                                                           "classes": {i: f"c{i}" for i in ids}}})
    records, names, found = read_records(recipe, "train", None)
    assert found == ids and names == [f"c{i}" for i in ids]
    loaded = load_mask(records[0]).ravel()
    assert loaded[:128].tolist() == list(range(128)) and set(loaded[128:].tolist()) == {255}
    assert "mask values 201 (64 px in 1 mask)" in capsys.readouterr().err

    both = recipe_from_dict({"task": "segment", "data": {"format": "masks", "root": str(tmp_path), "classes": {0: "a", 9: "b"},
                                                         "options": {"mask_values": {0: 0, 9: 1}}}})
    with pytest.raises(UserError, match="mask_values"):
        read_records(both, "train", None)
