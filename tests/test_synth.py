"""Synthetic shapes sets: layout, determinism, label correctness, argument checks."""
from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from visiontk.data import synth
from visiontk.errors import UserError

GENERATORS = {
    "classify": synth.synth_classify,
    "detect": synth.synth_detect,
    "segment": synth.synth_segment,
}


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _load_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def _coco(path: Path):
    from pycocotools.coco import COCO

    # COCO() prints progress to stdout; keep the test output clean.
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


@pytest.fixture(scope="module")
def detect_set(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("det") / "shapes"
    return out, synth.synth_detect(out, n=16, size=48, seed=3, max_objects=4)


# ---------------------------------------------------------------- all tasks


@pytest.mark.parametrize("task", sorted(GENERATORS))
def test_same_seed_same_bytes_other_seed_other_images(task, tmp_path):
    gen = GENERATORS[task]
    gen(tmp_path / "a", n=6, size=32, seed=5)
    gen(tmp_path / "b", n=6, size=32, seed=5)
    gen(tmp_path / "c", n=6, size=32, seed=6)
    a, b, c = (_tree(tmp_path / x) for x in "abc")
    assert a == b
    pngs = [k for k in a if k.endswith(".png")]
    assert pngs
    # Classify paths hold the class, which does not depend on the seed, so the
    # same file names exist; their pixels must not.
    assert all(a[k] != c.get(k) for k in pngs if "masks" not in k)


def test_images_do_not_depend_on_n(tmp_path):
    synth.synth_detect(tmp_path / "small", n=6, size=32, seed=1)
    synth.synth_detect(tmp_path / "big", n=12, size=32, seed=1)
    small, big = _tree(tmp_path / "small"), _tree(tmp_path / "big")
    common = [k for k in small if k.startswith(("images", "labels"))]
    assert len(common) == 12  # 4 train + 2 val images and labels
    assert all(small[k] == big[k] for k in common)


@pytest.mark.parametrize("task", sorted(GENERATORS))
def test_summary_and_synth_json(task, tmp_path):
    out = tmp_path / "set"
    summary = GENERATORS[task](out, n=8, size=24, seed=0, val_fraction=0.25)
    assert summary["task"] == task
    assert summary["root"] == str(out)
    assert (summary["train"], summary["val"]) == (6, 2)
    record = json.loads((out / "synth.json").read_text())
    assert record["task"] == task
    assert record["params"]["n"] == 8 and record["params"]["size"] == 24
    assert record["train"] == 6 and record["val"] == 2


# ---------------------------------------------------------------- classify


def test_classify_layout_and_balance(tmp_path):
    out = tmp_path / "cls"
    summary = synth.synth_classify(out, n=16, size=24, seed=0, val_fraction=0.25)
    assert summary["classes"] == ["circle", "square", "triangle"]
    assert (summary["train"], summary["val"]) == (12, 4)
    assert sorted(p.name for p in out.iterdir()) == ["synth.json", "train", "val"]
    for split, total in (("train", 12), ("val", 4)):
        assert sorted(p.name for p in (out / split).iterdir()) == list(synth.CLASSES)
        counts = {c: sorted((out / split / c).glob("*.png")) for c in synth.CLASSES}
        assert sum(len(v) for v in counts.values()) == total
        assert max(map(len, counts.values())) - min(map(len, counts.values())) <= 1
        names = sorted(p.name for v in counts.values() for p in v)
        assert names == [f"{i:05d}.png" for i in range(total)]
        for paths in counts.values():
            with Image.open(paths[0]) as im:
                assert im.mode == "RGB" and im.size == (24, 24)


def test_classify_one_shape_inside_image_with_contrast(tmp_path):
    size = 40
    for index in range(30):
        scene = synth.classify_scene(0, "train", index, size)
        assert len(scene.objects) == 1
        obj = scene.objects[0]
        assert obj.shape.cls == index % 3
        x, y, w, h = obj.bbox
        assert x >= 0 and y >= 0 and x + w <= size and y + h <= size
        assert 0.30 * size <= obj.shape.side <= 0.70 * size
        diff = np.array(obj.colour) - scene.background[obj.mask].mean(axis=0)
        assert np.linalg.norm(diff) >= synth._MIN_CONTRAST - 1e-6
        assert abs(diff @ synth._LUMA) >= synth._MIN_LUMA_CONTRAST - 1e-6


def test_colour_fallback_contrasts():
    class NoLuck:
        # Always proposes the reference colour itself, forcing the fallback.
        def integers(self, *args, **kwargs):
            return np.array([128, 128, 128])

    for grey in (0, 100, 128, 200, 255):
        under = np.full((5, 3), float(grey))
        colour = synth._pick_colour(NoLuck(), under)
        diff = np.array(colour) - under.mean(axis=0)
        assert np.linalg.norm(diff) >= synth._MIN_CONTRAST
        assert abs(diff @ synth._LUMA) >= synth._MIN_LUMA_CONTRAST


# ---------------------------------------------------------------- detect


def test_detect_layout_and_data_yaml(detect_set):
    out, summary = detect_set
    assert (summary["train"], summary["val"]) == (12, 4)
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data == {"path": ".", "train": "images/train", "val": "images/val", "nc": 3,
                    "names": {0: "circle", 1: "square", 2: "triangle"}}
    for split, count in (("train", 12), ("val", 4)):
        stems = [f"{i:05d}" for i in range(count)]
        assert sorted(p.stem for p in (out / "images" / split).glob("*.png")) == stems
        assert sorted(p.stem for p in (out / "labels" / split).glob("*.txt")) == stems


def test_detect_coco_matches_yolo(detect_set):
    out, summary = detect_set
    size = 48
    for split in ("train", "val"):
        coco = _coco(out / "annotations" / f"instances_{split}.json")
        cats = coco.loadCats(coco.getCatIds())
        assert [(c["id"], c["name"]) for c in cats] == [(1, "circle"), (2, "square"), (3, "triangle")]
        img_ids = coco.getImgIds()
        assert len(img_ids) == summary[split]
        n_anns = 0
        for info in coco.loadImgs(img_ids):
            path = out / "images" / split / info["file_name"]
            with Image.open(path) as im:
                assert im.size == (info["width"], info["height"]) == (size, size)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[info["id"]]))
            rows = [line.split() for line in
                    (out / "labels" / split / (Path(info["file_name"]).stem + ".txt")).read_text().splitlines()]
            assert 1 <= len(anns) == len(rows) <= 4
            for ann, row in zip(anns, rows):
                assert ann["iscrowd"] == 0 and ann["area"] > 0
                assert int(row[0]) == ann["category_id"] - 1
                assert all(len(v.split(".")[1]) == 6 for v in row[1:])
                cx, cy, w, h = (float(v) * size for v in row[1:])
                bx, by, bw, bh = ann["bbox"]
                for got, want in ((cx - w / 2, bx), (cy - h / 2, by), (w, bw), (h, bh)):
                    assert abs(got - want) <= 1.0
            n_anns += len(anns)
        assert n_anns == summary["objects"][split]


def test_detect_boxes_are_tight_around_drawn_pixels(detect_set):
    out, _ = detect_set
    size = 48
    singles = 0
    for split, count in (("train", 12), ("val", 4)):
        coco = json.loads((out / "annotations" / f"instances_{split}.json").read_text())
        for index in range(count):
            scene = synth.detect_scene(3, split, index, size, max_objects=4)
            # The regenerated scene is the one on disk...
            assert np.array_equal(_load_png(out / "images" / split / f"{index:05d}.png"), scene.image)
            boxes = [a["bbox"] for a in coco["annotations"] if a["image_id"] == index + 1]
            assert boxes == [list(o.bbox) for o in scene.objects]
            # ...each box is the extent of its shape's mask...
            for obj in scene.objects:
                ys, xs = np.nonzero(obj.mask)
                x, y, w, h = obj.bbox
                assert (x, y, x + w - 1, y + h - 1) == (xs.min(), ys.min(), xs.max(), ys.max())
            # ...and the masks are exactly where the shapes changed the image.
            changed = (scene.clean != scene.background).any(axis=-1)
            assert np.array_equal(changed, np.logical_or.reduce([o.mask for o in scene.objects]))
            if len(scene.objects) == 1:
                singles += 1
                ys, xs = np.nonzero(changed)
                x, y, w, h = scene.objects[0].bbox
                assert (x, y, w, h) == (xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1)
    assert singles > 0


def test_detect_overlap_is_limited():
    for index in range(40):
        boxes = [o.bbox for o in synth.detect_scene(0, "train", index, 64, max_objects=4).objects]
        for i, a in enumerate(boxes):
            for b in boxes[:i]:
                assert not synth._too_close(a, b, 0.1, 0.3)


# ---------------------------------------------------------------- segment


def test_segment_masks(tmp_path):
    out = tmp_path / "seg"
    summary = synth.synth_segment(out, n=12, size=32, seed=2)
    assert summary["classes"] == ["background", "circle", "square", "triangle"]
    assert (out / "classes.txt").read_text().splitlines() == summary["classes"]
    for split in ("train", "val"):
        images = sorted((out / split / "images").glob("*.png"))
        masks = sorted((out / split / "masks").glob("*.png"))
        assert [p.name for p in images] == [p.name for p in masks]
        assert len(images) == summary[split]
        for index, (ip, mp) in enumerate(zip(images, masks)):
            with Image.open(ip) as im, Image.open(mp) as mk:
                assert im.mode == "RGB" and mk.mode == "L" and im.size == mk.size == (32, 32)
                mask = np.asarray(mk)
            assert set(np.unique(mask)) <= {0, 1, 2, 3}
            assert (mask > 0).any()
            scene = synth.segment_scene(2, split, index, 32, max_objects=3)
            assert np.array_equal(mask, scene.label_mask())
            # Later shapes are painted over earlier ones: the top one is fully visible.
            top = scene.objects[-1]
            assert (mask[top.mask] == top.shape.cls + 1).all()


# ---------------------------------------------------------------- shapes


def test_shapes_stay_in_their_box():
    rng = np.random.default_rng(0)
    for _ in range(60):
        side = rng.uniform(4, 30)
        cx, cy = rng.uniform(side / 2, 40 - side / 2, size=2)
        for cls in range(3):
            shape = synth.Shape(cls, float(cx), float(cy), float(side), float(rng.uniform(0, 2 * math.pi)))
            ys, xs = np.nonzero(synth.shape_mask(shape, 41))
            assert xs.size > 0
            assert xs.min() >= cx - side / 2 - 1 and xs.max() <= cx + side / 2 + 1
            assert ys.min() >= cy - side / 2 - 1 and ys.max() <= cy + side / 2 + 1


# ---------------------------------------------------------------- arguments and output dirs


@pytest.mark.parametrize("task", sorted(GENERATORS))
@pytest.mark.parametrize("kwargs", [
    {"n": 1}, {"n": 2.5}, {"size": 15}, {"size": 100_000}, {"seed": -1},
    {"val_fraction": 0.0}, {"val_fraction": 1.0}, {"val_fraction": True},
])
def test_bad_arguments(task, kwargs, tmp_path):
    with pytest.raises(UserError) as info:
        GENERATORS[task](tmp_path / "x", **kwargs)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("task", ["detect", "segment"])
def test_bad_max_objects(task, tmp_path):
    with pytest.raises(UserError, match="max_objects"):
        GENERATORS[task](tmp_path / "x", n=4, size=16, max_objects=0)


def test_tiny_sets_keep_both_splits(tmp_path):
    summary = synth.synth_classify(tmp_path / "a", n=2, size=16, val_fraction=0.01)
    assert (summary["train"], summary["val"]) == (1, 1)


def test_refuses_foreign_non_empty_dir(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(UserError, match="not empty"):
        synth.synth_classify(tmp_path, n=4, size=16)
    (tmp_path / "synth.json").write_text("{not json")
    with pytest.raises(UserError, match="not empty"):
        synth.synth_classify(tmp_path, n=4, size=16)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_refuses_a_file(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(UserError, match="not a directory"):
        synth.synth_segment(tmp_path / "f", n=4, size=16)


def test_overwrites_previous_output_without_stale_files(tmp_path):
    out = tmp_path / "set"
    synth.synth_detect(out, n=12, size=16)
    synth.synth_detect(out, n=4, size=16)
    assert len(list((out / "images" / "train").glob("*.png"))) == 3
    assert len(list((out / "labels" / "train").glob("*.txt"))) == 3
    # A different task over an old output leaves only the new task's files.
    synth.synth_segment(out, n=4, size=16)
    assert sorted(p.name for p in out.iterdir()) == ["classes.txt", "synth.json", "train", "val"]
