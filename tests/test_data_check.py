"""`visiontk data check` (issue 13): every planted error found and named with its file, statistics
equal to counts made independently, exit 0 on a clean set and 1 on a broken one.

Each set is written by the test: a few 16-64 px images, one planted problem.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import run_cli
from PIL import Image

from visiontk.tasks.data_check import check_target

# The real data sets (README: ../shared/data beside the repository; VISIONTK_SHARED_DATA elsewhere).
SHARED_DATA = Path(os.environ.get("VISIONTK_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
RACCOON = SHARED_DATA / "raccoon"
GOOD_LINE = "0 0.5 0.5 0.25 0.25"


def _png(path: Path, size: int = 16, seed: int = 0, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if mode == "RGB":
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
    elif mode == "L":
        Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(path)
    elif mode == "I;16":
        Image.fromarray(rng.integers(0, 65535, (size, size), dtype=np.uint16)).save(path)
    elif mode == "CMYK":
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).convert("CMYK").save(path)
    return path


def _yolo_set(root: Path, train_lines: dict[str, list[str]], size: int = 16, names: str = "[cat, dog]") -> Path:
    """images/{train,val} + labels/{train,val} + data.yaml; val holds one clean image."""
    for split, files in (("train", train_lines), ("val", {"v0": [GOOD_LINE]})):
        for i, (stem, lines) in enumerate(files.items()):
            _png(root / "images" / split / f"{stem}.png", size=size, seed=i)
            label = root / "labels" / split / f"{stem}.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("".join(f"{line}\n" for line in lines))
    (root / "data.yaml").write_text(f"train: images/train\nval: images/val\nnames: {names}\n")
    return root


def _check(target: Path, tmp_path: Path, *sets: str, task: str | None = None) -> dict:
    # The plots cost ~0.3 s each: the command's test draws them.
    return check_target(str(target), task, list(sets), out_dir=tmp_path / "report", plots=False)


def _problem(summary: dict, kind: str, split: str = "train") -> dict:
    found = next(s for s in summary["splits"] if s["split"] == split)["problems"]
    assert kind in found, f"{kind} not reported; reported: {sorted(found)}"
    return found[kind]


# --------------------------------------------------------------- one set per planted error

PLANTED_BOXES = {
    # kind: (label line of the bad image, what its message must say)
    "box_clipped": ("0 0.9 0.5 0.4 0.2", "extends outside the 16x16 image"),
    "box_outside": ("1 1.5 0.5 0.2 0.2", "entirely outside"),
    "box_empty": ("0 0.5 0.5 0 0.2", "zero or negative size"),
    "unknown_class": ("5 0.5 0.5 0.2 0.2", "class id 5 is not in names"),
    "box_duplicate": (f"{GOOD_LINE}\n{GOOD_LINE}", "repeats box 0"),
}


@pytest.mark.parametrize("kind", sorted(PLANTED_BOXES))
def test_each_planted_annotation_error_is_reported_by_name_with_its_file(tmp_path, kind):
    line, says = PLANTED_BOXES[kind]
    root = _yolo_set(tmp_path / "set", {"ok0": [GOOD_LINE], "bad": line.split("\n"), "ok1": [GOOD_LINE]})
    summary = _check(root, tmp_path)
    problem = _problem(summary, kind)
    assert problem["count"] == 1 and summary["errors"] == 1 and not summary["clean"]
    bad_file = "bad.png" if kind == "box_duplicate" else "bad.txt"
    assert bad_file in problem["first"][0] and says in problem["first"][0]
    val = summary["splits"][1]
    assert val["errors"] == 0 and val["problems"] == {}


def test_unreadable_image_is_reported_with_its_file(tmp_path):
    root = _yolo_set(tmp_path / "set", {"ok0": [GOOD_LINE], "broken": [GOOD_LINE]})
    (root / "images" / "train" / "broken.png").write_bytes(b"not an image at all")
    summary = _check(root, tmp_path)
    problem = _problem(summary, "bad_image")
    assert problem["count"] == 1 and "broken.png" in problem["first"][0]
    assert summary["splits"][0]["images"]["unreadable"] == 1 and summary["splits"][0]["images"]["count"] == 2


def test_image_modes_are_counted_and_a_truncated_file_is_unreadable(tmp_path):
    """ImageFolder: grey, 16-bit and CMYK files are read (counted, not errors); a PNG whose
    header is whole but whose pixels are cut off fails only when decoded, as in training."""
    root = tmp_path / "folder"
    _png(root / "train" / "a" / "rgb.png")
    _png(root / "train" / "a" / "grey.png", mode="L")
    _png(root / "train" / "b" / "deep.png", mode="I;16")
    _png(root / "train" / "b" / "print.jpg", mode="CMYK")
    # 16-bit RGB: PIL opens it as mode RGB, only its raw mode says 16 bits.
    cv2.imwrite(str(root / "train" / "b" / "deep_rgb.png"), np.full((16, 16, 3), 40000, np.uint16))
    _png(root / "val" / "a" / "v.png")
    _png(root / "val" / "b" / "w.png")
    summary = _check(root, tmp_path)
    assert summary["task"] == "classify" and summary["clean"]
    images = summary["splits"][0]["images"]
    assert (images["count"], images["grey"], images["high_bit_depth"], images["cmyk"]) == (5, 2, 2, 1)
    assert images["modes"] == {"CMYK": 1, "I;16": 1, "L": 1, "RGB": 2}
    assert [(c["name"], c["images"]) for c in summary["splits"][0]["classes"]] == [("a", 2), ("b", 3)]

    whole = (root / "val" / "b" / "w.png").read_bytes()
    (root / "val" / "b" / "w.png").write_bytes(whole[: len(whole) // 2])
    summary = check_target(str(root), None, [], out_dir=tmp_path / "again", plots=False)
    problem = _problem(summary, "bad_image", "val")
    assert problem["count"] == 1 and "w.png" in problem["first"][0]


def test_mask_with_an_out_of_range_value_is_reported_with_its_file(tmp_path):
    root = tmp_path / "masks"
    (root).mkdir()
    (root / "classes.txt").write_text("background\nobject\n")
    for split in ("train", "val"):
        for i in range(2):
            _png(root / split / "images" / f"{i}.png", seed=i)
            mask = np.zeros((16, 16), np.uint8)
            mask[4:8, 4:8] = 7 if (split, i) == ("train", 1) else 1
            (root / split / "masks").mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(root / split / "masks" / f"{i}.png")
    summary = _check(root, tmp_path)
    problem = _problem(summary, "bad_mask")
    assert problem["count"] == 1 and summary["errors"] == 1
    assert str(root / "train" / "masks" / "1.png") in problem["first"][0] and "7" in problem["first"][0]


def test_coco_image_whose_size_differs_from_its_annotation(tmp_path):
    root = tmp_path / "coco"
    for split in ("train", "val"):
        _png(root / "images" / split / "a.png")
        images = [{"id": 3, "file_name": "a.png", "width": 32 if split == "train" else 16, "height": 16}]
        anns = [{"id": 1, "image_id": 3, "category_id": 9, "bbox": [2, 2, 6, 6], "iscrowd": 0}]
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(
            {"images": images, "annotations": anns, "categories": [{"id": 9, "name": "kite"}]}))
    summary = _check(root, tmp_path)
    assert summary["format"] == "coco"
    problem = _problem(summary, "size_mismatch")
    assert "a.png: image is 16x16 but its annotation says 32x16" in problem["first"][0]
    assert summary["splits"][1]["classes"] == [{"name": "kite", "id": 9, "images": 1, "instances": 1}]


def test_annotation_file_that_does_not_parse_is_the_splits_problem(tmp_path):
    """What stops training's reader (here a val json cut short) is reported, and the other split still checked."""
    root = tmp_path / "coco"
    for split in ("train", "val"):
        _png(root / "images" / split / "a.png")
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps({
            "images": [{"id": 1, "file_name": "a.png", "width": 16, "height": 16}], "annotations": [],
            "categories": [{"id": 1, "name": "kite"}]})[: None if split == "train" else 30])
    summary = _check(root, tmp_path)
    problem = _problem(summary, "unreadable_split", "val")
    assert "instances_val.json: not valid JSON" in problem["first"][0]
    train = summary["splits"][0]
    assert train["errors"] == 0 and train["images"]["count"] == 1
    assert train["notes"]["images_without_objects"]["first"] == [str(root / "images/train/a.png")]
    assert train["notes"]["classes_without_images"]["first"] == ["kite"]


def test_voc_folder_is_read_for_the_task_asked(tmp_path):
    """A VOC folder holding boxes and masks: detect by default, segment with --task."""
    root = tmp_path / "VOC"
    for i, (name, value) in enumerate((("cat", 8), ("dog", 12), ("cat", 8))):
        _png(root / "JPEGImages" / f"{i}.jpg", seed=i)
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{i}.xml").write_text(
            f"<annotation><filename>{i}.jpg</filename><size><width>16</width><height>16</height></size><object>"
            f"<name>{name}</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>"
            f"</annotation>")
        mask = np.zeros((16, 16), np.uint8)
        mask[1:9, 1:9] = value
        (root / "SegmentationClass").mkdir(exist_ok=True)
        Image.fromarray(mask).save(root / "SegmentationClass" / f"{i}.png")
    for folder in ("Main", "Segmentation"):
        (root / "ImageSets" / folder).mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / folder / "train.txt").write_text("0\n1\n")
        (root / "ImageSets" / folder / "val.txt").write_text("2\n")
    boxes = _check(root, tmp_path)
    assert (boxes["task"], boxes["format"], boxes["clean"]) == ("detect", "voc", True)
    assert [(c["name"], c["instances"]) for c in boxes["splits"][0]["classes"]] == [("cat", 1), ("dog", 1)]
    masks = check_target(str(root), "segment", [], out_dir=tmp_path / "masks", plots=False)
    assert (masks["task"], masks["format"], masks["clean"]) == ("segment", "voc", True)
    rows = {c["name"]: c["pixels"] for c in masks["splits"][0]["classes"]}
    assert (rows["background"], rows["cat"], rows["dog"]) == (2 * (256 - 64), 64, 64)  # VOC: cat is 8, dog 12


# --------------------------------------------------------------- statistics against independent counts


def test_yolo_v1_grid_collisions_give_the_recall_ceiling(tmp_path):
    """64 px images, S=2 (32 px cells), B=2. Image 'crowd': 3 objects centred in the top-left
    cell -> the targets keep 1 (2 lost), 1 beyond B; image 'apart': 2 objects in 2 cells."""
    crowd = ["0 0.125 0.125 0.2 0.2", "1 0.25 0.25 0.3 0.3", "0 0.375 0.15 0.1 0.1"]
    apart = ["0 0.25 0.25 0.2 0.2", "1 0.75 0.75 0.2 0.2"]
    root = _yolo_set(tmp_path / "set", {"crowd": crowd, "apart": apart}, size=64)
    summary = _check(root, tmp_path, "model.head.S=2", "model.head.B=2")
    grid = summary["splits"][0]["grid"]
    assert (grid["S"], grid["B"], grid["objects"], grid["lost"], grid["beyond_b"]) == (2, 2, 5, 2, 1)
    assert grid["recall_ceiling"] == pytest.approx(0.6) and grid["first"] == [str(root / "images/train/crowd.png")]
    assert "recall ceiling 0.60: 2 of 5 objects" in grid["text"]
    # Per class, and box sizes in pixels of the 448 px input of the template (sqrt of the area).
    assert [(c["name"], c["images"], c["instances"]) for c in summary["splits"][0]["classes"]] == [
        ("cat", 2, 3), ("dog", 2, 2)]
    boxes = summary["splits"][0]["boxes"]
    sides = np.array([0.2, 0.3, 0.1, 0.2, 0.2]) * 448
    assert boxes["count"] == 5 and sum(boxes["counts"]) == 5
    assert boxes["counts"] == np.histogram(sides, bins=boxes["edges"])[0].tolist()


def test_segmentation_pixel_frequencies_equal_numpy_counts(tmp_path):
    root = tmp_path / "masks"
    root.mkdir()
    (root / "classes.txt").write_text("background\nroad\ncar\n")
    rng = np.random.default_rng(3)
    masks = []
    for split in ("train", "val"):
        for i in range(3):
            _png(root / split / "images" / f"{i}.png", size=24, seed=i)
            mask = rng.choice(np.array([0, 1, 2, 255], np.uint8), size=(24, 24), p=[0.5, 0.3, 0.15, 0.05])
            if i == 2:
                mask[mask == 2] = 0  # no 'car' in this mask: the class's image count drops
            (root / split / "masks").mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(root / split / "masks" / f"{i}.png")
            if split == "train":
                masks.append(mask)
    summary = _check(root, tmp_path)
    assert summary["clean"]
    counts = np.bincount(np.concatenate([m.ravel() for m in masks]), minlength=256)
    train = summary["splits"][0]
    assert [c["pixels"] for c in train["classes"]] == counts[:3].tolist()
    assert [c["pixel_frequency"] for c in train["classes"]] == pytest.approx((counts[:3] / counts[:3].sum()).tolist(),
                                                                              abs=1e-6)
    assert train["pixels"] == {"labelled": int(counts[:3].sum()), "ignored": int(counts[255])}
    assert [c["images"] for c in train["classes"]] == [3, 3, 2]


# --------------------------------------------------------------- the command


def test_cli_exit_codes_report_and_files(tmp_path):
    clean = _yolo_set(tmp_path / "clean", {"a": [GOOD_LINE], "b": [GOOD_LINE, "1 0.2 0.2 0.1 0.1"]})
    res = run_cli("data", "check", str(clean), "--out-dir", str(tmp_path / "r1"))
    assert res.returncode == 0, res.stderr
    assert "clean: no problems found" in res.stdout
    assert {p.name for p in (tmp_path / "r1").iterdir()} == {"summary.json", "classes.png", "box_sizes.png"}

    broken = _yolo_set(tmp_path / "broken", {"a": [GOOD_LINE], "b": ["1 1.5 0.5 0.2 0.2"]})
    res = run_cli("data", "check", str(broken), "--out-dir", str(tmp_path / "r2"), "--json", "--no-plots")
    assert res.returncode == 1, res.stderr
    assert "error: 1 problem in the data set" in res.stderr
    summary = json.loads(res.stdout)
    assert summary["errors"] == 1 and str(broken / "labels/train/b.txt") in _problem(summary, "box_outside")["first"][0]
    assert json.loads((tmp_path / "r2" / "summary.json").read_text())["errors"] == 1
    assert [p.name for p in (tmp_path / "r2").iterdir()] == ["summary.json"]
    # stats: the same report, no verdict
    res = run_cli("data", "stats", str(broken), "--out-dir", str(tmp_path / "r3"), "--no-plots")
    assert res.returncode == 0, res.stderr
    assert "box_outside" in res.stdout and "clean" not in res.stdout

    # The output rule: never into the data set.
    res = run_cli("data", "check", str(broken), "--out-dir", str(broken / "report"))
    assert res.returncode == 2 and "inside the data set" in res.stderr
    assert not (broken / "report").exists()


def test_unet_style_folders_with_black_and_white_masks_are_a_mask_set(tmp_path):
    """Found on ISBI 2012: train/image + train/label (0/255 PNGs), no val folder, was taken for an
    ImageFolder with two classes, 'image' and 'label'. It is a mask set: 255 is class 1 (not
    ignore), and the last 20 % of train is held out as val."""
    root = tmp_path / "membrane"
    rng = np.random.default_rng(4)
    masks = []
    for i in range(5):
        _png(root / "train" / "image" / f"{i}.png", size=16, seed=i, mode="L")
        mask = np.where(rng.random((16, 16)) < 0.3, 0, 255).astype(np.uint8)
        (root / "train" / "label").mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(root / "train" / "label" / f"{i}.png")
        masks.append(mask)
    summary = _check(root, tmp_path)
    assert (summary["task"], summary["format"], summary["clean"]) == ("segment", "masks", True)
    train, val = summary["splits"]
    assert (train["images"]["count"], val["images"]["count"]) == (4, 1)
    counts = [int((np.stack(masks[:4]) == v).sum()) for v in (0, 255)]
    assert [(c["name"], c["pixels"]) for c in train["classes"]] == [("0", counts[0]), ("255", counts[1])]
    assert train["pixels"]["ignored"] == 0


def _xml_set(root: Path, n: int = 3) -> Path:
    """The raccoon set's layout: annotations/r-<i>.xml beside images/r-<i>.jpg, one box each."""
    (root / "annotations").mkdir(parents=True)
    for i in range(n):
        _png(root / "images" / f"r-{i}.jpg", seed=i)
        (root / "annotations" / f"r-{i}.xml").write_text(
            f"<annotation><filename>r-{i}.jpg</filename><size><width>16</width><height>16</height></size><object>"
            f"<name>raccoon</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>9</xmax><ymax>9</ymax></bndbox>"
            f"</object></annotation>")
    return root


def _box_csv(path: Path, names: list[str]) -> Path:
    """A CSV list as the raccoon set's: one row per box, so an image may come twice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("filename,width,height,class,xmin,ymin,xmax,ymax\n"
                    + "".join(f"{n},16,16,raccoon,2,2,9,9\n" for n in names))
    return path


def test_voc_xml_beside_an_images_folder_is_a_voc_set(tmp_path):
    """Found on the raccoon set (annotations/*.xml + images/, split by CSV lists): `data check DIR`
    found no layout, even with --task detect. It is read as VOC; without split lists, every
    annotation in both splits until data.options.ids splits them."""
    root = _xml_set(tmp_path / "raccoon")
    summary = _check(root, tmp_path)
    assert (summary["task"], summary["format"], summary["clean"]) == ("detect", "voc", True)
    assert [(s["images"]["count"], s["classes"][0]["name"]) for s in summary["splits"]] == [(3, "raccoon")] * 2
    _box_csv(root / "lists" / "a.csv", ["r-0.jpg", "r-1.jpg"])
    _box_csv(root / "lists" / "b.csv", ["r-2.jpg"])
    split = check_target(str(root), "detect", ["data.options.ids={train: lists/a.csv, val: lists/b.csv}"],
                         out_dir=tmp_path / "split", plots=False)
    assert [s["images"]["count"] for s in split["splits"]] == [2, 1] and split["clean"]


def test_csv_split_lists_beside_a_voc_layout_are_its_split(tmp_path, capsys):
    """Found on the raccoon set: data/train_labels.csv and data/test_labels.csv (one row per box,
    a 'filename' column) give its split, and `data check DIR` read every annotation in both
    splits: validation on the training images. They are found by their names and used as
    data.options.ids; data/raccoon_labels.csv (every box, no split in its name) is not a split."""
    root = _xml_set(tmp_path / "raccoon", n=5)
    _box_csv(root / "data" / "train_labels.csv", ["r-3.jpg", "r-0.jpg", "r-0.jpg", "r-1.jpg"])
    _box_csv(root / "data" / "test_labels.csv", ["r-2.jpg", "r-4.jpg"])
    _box_csv(root / "data" / "raccoon_labels.csv", [f"r-{i}.jpg" for i in range(5)])
    summary = _check(root, tmp_path)
    assert (summary["format"], summary["clean"], summary["warnings"]) == ("voc", True, [])
    train, val = summary["splits"]
    assert (train["images"]["count"], val["images"]["count"]) == (3, 2)
    assert train["classes"][0]["instances"] == 3  # images, not CSV rows: r-0 once
    assert str(root / "data" / "train_labels.csv") in train["source"]
    assert str(root / "data" / "test_labels.csv") in val["source"]
    err = capsys.readouterr().err
    assert "split lists found: train data/train_labels.csv (3 images), val data/test_labels.csv (2 images)" in err
    # The recipe's keys: --set on top of what was found, as everywhere.
    every = _check(root, tmp_path / "all", "data.options.ids=null")
    assert [s["images"]["count"] for s in every["splits"]] == [5, 5]


def test_text_split_lists_prefer_val_over_test(tmp_path):
    """Id lists (one id a line, VOC's ImageSets style) in splits/: val.txt is the val split, not test.txt."""
    root = _xml_set(tmp_path / "set", n=4)
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("r-0\nr-1\n")
    (root / "splits" / "val.txt").write_text("r-2\n")
    (root / "splits" / "test.txt").write_text("r-3\n")
    summary = _check(root, tmp_path)
    assert [s["images"]["count"] for s in summary["splits"]] == [2, 1]
    assert summary["splits"][1]["problems"] == {} and summary["clean"]
    assert str(root / "splits" / "val.txt") in summary["splits"][1]["source"]


def test_split_lists_beside_voc_masks_split_them_too(tmp_path):
    """VOC's SegmentationClass layout without ImageSets (--task segment): lists/ train and val id lists."""
    root = tmp_path / "VOC"
    for i in range(3):
        _png(root / "JPEGImages" / f"{i}.jpg", seed=i)
        mask = np.zeros((16, 16), np.uint8)
        mask[1:9, 1:9] = 8
        (root / "SegmentationClass").mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(root / "SegmentationClass" / f"{i}.png")
    (root / "lists").mkdir()
    (root / "lists" / "train.txt").write_text("0\n2\n")
    (root / "lists" / "val.txt").write_text("1\n")
    summary = check_target(str(root), "segment", [], out_dir=tmp_path / "masks", plots=False)
    assert (summary["format"], summary["clean"]) == ("voc", True)
    assert [s["images"]["count"] for s in summary["splits"]] == [2, 1]


def test_split_list_naming_missing_files_is_said_in_one_line(tmp_path, capsys):
    """A list whose entries mostly name the set is its split; the entries without an annotation
    are one warning naming the list file, and the check counts them (missing_annotation)."""
    root = _xml_set(tmp_path / "raccoon", n=4)
    _box_csv(root / "data" / "train_labels.csv", ["r-0.jpg", "r-1.jpg", "r-2.jpg", "gone-7.jpg"])
    _box_csv(root / "data" / "test_labels.csv", ["r-3.jpg"])
    summary = _check(root, tmp_path)
    lines = [line for line in capsys.readouterr().err.splitlines() if "train_labels.csv" in line and "gone-7" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: ")
    assert f"{root / 'data' / 'train_labels.csv'}: 1 of 4 listed images have no annotation file" in lines[0]
    assert [s["images"]["count"] for s in summary["splits"]] == [3, 1]
    assert _problem(summary, "missing_annotation")["count"] == 1 and not summary["clean"]
    assert any("train_labels.csv" in w and "gone-7" in w for w in summary["warnings"])


def test_lists_that_do_not_name_the_set_are_not_its_split(tmp_path, capsys):
    """A list of other files (another set's, or names where ids are expected), a list without
    its other split, two lists for one split: none is guessed, each said in one line."""
    root = _xml_set(tmp_path / "set", n=3)
    _box_csv(root / "data" / "train.csv", ["other-1.jpg", "other-2.jpg", "r-0.jpg"])
    _box_csv(root / "data" / "val.csv", ["r-2.jpg"])
    summary = _check(root, tmp_path)
    err = capsys.readouterr().err
    assert f"{root / 'data' / 'train.csv'}: not used as the train split: only 1 of 3 listed images" in err
    assert [s["images"]["count"] for s in summary["splits"]] == [3, 3]  # every annotation, as without lists
    assert any("train.csv: not used" in w for w in summary["warnings"])

    lone = _xml_set(tmp_path / "lone", n=2)
    _box_csv(lone / "data" / "train.csv", ["r-0.jpg"])
    summary = _check(lone, tmp_path / "lone-report")
    assert [s["images"]["count"] for s in summary["splits"]] == [2, 2]
    assert any("train.csv: not used as a split list: no val list" in w for w in summary["warnings"])

    two = _xml_set(tmp_path / "two", n=3)
    _box_csv(two / "data" / "train.csv", ["r-0.jpg"])
    _box_csv(two / "splits" / "train.csv", ["r-1.jpg"])
    _box_csv(two / "data" / "val.csv", ["r-2.jpg"])
    summary = _check(two, tmp_path / "two-report")
    assert [s["images"]["count"] for s in summary["splits"]] == [3, 3]
    assert any("several could be the train split (data/train.csv, splits/train.csv)" in w for w in summary["warnings"])


def test_an_image_in_both_split_lists_is_a_warning(tmp_path):
    root = _xml_set(tmp_path / "set", n=3)
    _box_csv(root / "data" / "train_labels.csv", ["r-0.jpg", "r-1.jpg"])
    _box_csv(root / "data" / "test_labels.csv", ["r-1.jpg", "r-2.jpg"])
    summary = _check(root, tmp_path)
    assert [s["images"]["count"] for s in summary["splits"]] == [2, 2] and summary["clean"]
    assert [w for w in summary["warnings"] if "1 image is in both split lists" in w and "r-1" in w]


@pytest.mark.skipif(not RACCOON.is_dir(), reason=f"{RACCOON} is absent")
def test_real_raccoon_set_is_split_by_its_csv_lists(tmp_path):
    """The real set (../shared/data/raccoon): 160 train and 40 val images, as its README and
    the detect/raccoon recipe split it."""
    res = run_cli("data", "check", str(RACCOON), "--out-dir", str(tmp_path / "r"), "--json", "--no-plots")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert [s["images"]["count"] for s in summary["splits"]] == [160, 40]
    assert [s["classes"][0]["instances"] for s in summary["splits"]] == [173, 44]
    assert summary["clean"] and summary["warnings"] == []


# --------------------------------------------------------------- warnings are not problems, and are said


def _membrane(root: Path, n: int = 3) -> Path:
    rng = np.random.default_rng(4)
    for i in range(n):
        _png(root / "train" / "image" / f"{i}.png", size=16, seed=i, mode="L")
        (root / "train" / "label").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.where(rng.random((16, 16)) < 0.3, 0, 255).astype(np.uint8)).save(
            root / "train" / "label" / f"{i}.png")
    return root


def test_a_clean_set_with_warnings_says_so_in_its_verdict_and_json(tmp_path):
    """Found on ISBI 2012 with mask_values unset: the 0/255 warning was printed and the verdict
    said 'clean: no problems found' alone. Clean of errors (exit 0), with its warnings counted,
    listed, and in --json and summary.json."""
    root = _membrane(tmp_path / "membrane", n=5)
    res = run_cli("data", "check", str(root), "--set", "data.options.mask_values=null", "--out-dir",
                  str(tmp_path / "r1"), "--no-plots")
    assert res.returncode == 0, res.stderr
    assert "hold only 0 and 255" in res.stderr
    # The layout's note on what it would have done is not said when --set replaced it.
    assert "read as black/white" not in res.stderr and "no val split" in res.stderr
    lines = res.stdout.splitlines()
    verdict = next(line for line in lines if line.startswith("clean"))
    assert verdict == "clean: no problems found, but 2 warnings (see above)"
    header = lines.index("2 warnings (not problems; in summary.json 'warnings'):")
    assert all("data.options.mask_values: {0: 0, 255: 1}" in line for line in lines[header + 1:header + 3])
    saved = json.loads((tmp_path / "r1" / "summary.json").read_text())
    assert saved["clean"] and saved["warning_count"] == 2 and len(saved["warnings"]) == 2
    assert all("hold only 0 and 255" in w for w in saved["warnings"])

    res = run_cli("data", "check", str(root), "--set", "data.options.mask_values=null", "--out-dir",
                  str(tmp_path / "r2"), "--json", "--no-plots")
    assert res.returncode == 0 and json.loads(res.stdout)["warning_count"] == 2
    # Read as black/white (the layout's own reading): no warning, plainly clean.
    res = run_cli("data", "check", str(root), "--out-dir", str(tmp_path / "r3"), "--no-plots")
    assert res.returncode == 0 and "read as black/white, 255 -> class 1" in res.stderr
    assert "clean: no problems found" in res.stdout.splitlines() and "not problems" not in res.stdout
    assert json.loads((tmp_path / "r3" / "summary.json").read_text())["warnings"] == []


def test_counted_problems_are_not_warnings_too(tmp_path):
    """A bad box is a problem (counted, exit 1); its printed warning is not listed again as a warning."""
    root = _yolo_set(tmp_path / "set", {"ok": [GOOD_LINE], "bad": ["1 1.5 0.5 0.2 0.2"]})
    summary = _check(root, tmp_path)
    assert summary["errors"] == 1 and summary["warnings"] == []
    res = run_cli("data", "check", str(root), "--out-dir", str(tmp_path / "r"), "--no-plots")
    assert res.returncode == 1
    assert "errors: 1 problem in the data set" in res.stdout
    assert "error: 1 problem in the data set" in res.stderr
