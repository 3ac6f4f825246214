"""Bad annotations for detection (COCO json, YOLO txt, VOC xml) and segmentation (mask PNGs, COCO).

Through `detect train` / `segment train` (in this process): with
data.bad_annotations=skip every problem is one warning naming the file and the
entry, and training goes on; with =error the first one stops the run with that
line and exit 2. The readers of visiontk.data.formats are also checked
directly for the formats the CLI cases do not cover (YOLO, VOC, COCO regions).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visiontk.errors import DataError

from .support import assert_error, invoke, warnings_of


def _has_command(name: str) -> bool:
    import typer.main

    from visiontk.cli import app

    return name in typer.main.get_command(app).commands  # the names, without building the groups


needs_detect = pytest.mark.skipif(not _has_command("detect"), reason="detect command not in this build")
needs_segment = pytest.mark.skipif(not _has_command("segment"), reason="segment command not in this build")


def _square(path: Path, size: int = 32) -> None:
    a = np.full((size, size, 3), 40, np.uint8)
    a[8:20, 6:18] = (220, 50, 50)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


# ------------------------------------------------------------------ detection, COCO

BAD_COCO = {
    # case: (extra images, extra annotations, expected message after "<json>: ")
    "path escaping the data root": ([{"id": 10, "file_name": "../../../../etc/passwd", "width": 32, "height": 32}], [],
                                    "image id 10: file_name '../../../../etc/passwd' escapes the image root {images}"),
    "absolute path": ([{"id": 12, "file_name": "/etc/passwd", "width": 32, "height": 32}], [],
                      "image id 12: file_name '/etc/passwd' escapes the image root {images}"),
    "missing field": ([{"id": 11, "file_name": "0.png", "height": 32}], [], "image id 11: missing required field 'width'"),
    "box outside the image": ([], [{"id": 20, "image_id": 2, "category_id": 1, "bbox": [40, 40, 5, 5]}],
                              "annotation id 20: box [40, 40, 45, 45] is entirely outside the 32x32 image"),
    "box of zero size": ([], [{"id": 21, "image_id": 2, "category_id": 1, "bbox": [3, 3, 0, 5]}],
                         "annotation id 21: zero or negative size (w=0, h=5)"),
    "unknown class id": ([], [{"id": 22, "image_id": 3, "category_id": 7, "bbox": [3, 3, 4, 5]}],
                         "annotation id 22: category_id 7 is not in 'categories'"),
    "box without bbox": ([], [{"id": 23, "image_id": 3, "category_id": 1}],
                         "annotation id 23: missing required field 'bbox'"),
    "missing image file": ([{"id": 13, "file_name": "gone.png", "width": 32, "height": 32}], [],
                           "image id 13: image file {images}/gone.png not found"),
}


def coco_set(root: Path, cases: list[str]) -> Path:
    """4 good images with one box each per split; the bad entries of `cases` in train."""
    for split in ("train", "val"):
        images, anns = [], []
        for i in range(4):
            _square(root / "images" / split / f"{i}.png")
            images.append({"id": i + 1, "file_name": f"{i}.png", "width": 32, "height": 32})
            anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [6, 8, 12, 12]})
        if split == "train":
            for case in cases:
                images += BAD_COCO[case][0]
                anns += BAD_COCO[case][1]
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(
            json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "box"}]}))
    return root / "annotations" / "instances_train.json"


DETECT_TINY = ["--set", "data.synthetic=null", "--set", "data.image_size=32", "--set", "model.backbone_options.width=4",
               "--set", "model.head.S=2", "--set", "model.head.width=8", "--set", "train.epochs=1",
               "--set", "train.batch_size=2", "--set", "output.plots=false", "--set", "train.warmup_iters=0"]


def detect_train(root: Path, runs: Path, *extra: str):
    return invoke("detect", "train", "detect/shapes", "--set", f"data.root={root}", *DETECT_TINY, *extra,
                  "--project", runs)


@pytest.fixture(scope="module")
def coco_skip_run(tmp_path_factory):
    """Every bad COCO entry in one training set, policy skip: (outcome, json path, images folder)."""
    root = tmp_path_factory.mktemp("coco-bad")
    ann = coco_set(root, list(BAD_COCO))
    out = detect_train(root, root / "runs")
    return out, ann, root / "images" / "train"


@needs_detect
def test_coco_with_bad_entries_trains_on_the_good_ones(coco_skip_run):
    out, ann, _ = coco_skip_run
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert "train: 4 images, 4 boxes, 1 class; " in out.stderr  # the 4 good images, their 4 boxes
    assert len(warnings_of(out)) == len(BAD_COCO)


@needs_detect
@pytest.mark.parametrize("case", list(BAD_COCO))
def test_coco_bad_entry_is_one_warning_naming_file_and_entry(coco_skip_run, case):
    out, ann, images = coco_skip_run
    message = f"{ann}: " + BAD_COCO[case][2].format(images=images)
    assert f"{message} (skipped)" in warnings_of(out)


@needs_detect
@pytest.mark.parametrize("case", list(BAD_COCO))
def test_coco_bad_entry_with_policy_error_stops_with_that_line(tmp_path, case):
    ann = coco_set(tmp_path / "d", [case])
    out = detect_train(tmp_path / "d", tmp_path / "runs", "--set", "data.bad_annotations=error")
    images = tmp_path / "d" / "images" / "train"
    assert_error(out, f"{ann}: " + BAD_COCO[case][2].format(images=images))
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*.pt"))


@needs_detect
def test_coco_json_missing_a_top_level_field(tmp_path):
    ann = coco_set(tmp_path / "d", [])
    data = json.loads(ann.read_text())
    del data["annotations"]
    ann.write_text(json.dumps(data))
    assert_error(detect_train(tmp_path / "d", tmp_path / "runs"), f"{ann}: missing required field 'annotations' (a list)")


@needs_detect
def test_coco_json_that_is_not_json(tmp_path):
    ann = coco_set(tmp_path / "d", [])
    ann.write_text('{"images": [}')
    assert_error(detect_train(tmp_path / "d", tmp_path / "runs"),
                 f"{ann}: not valid JSON (Expecting value: line 1 column 13 (char 12))")


@needs_detect
def test_unreadable_image_in_a_detection_set_is_skipped(tmp_path):
    from .support import write_truncated

    coco_set(tmp_path / "d", [])
    bad = write_truncated(tmp_path / "d" / "images" / "train" / "1.png", "PNG")
    out = detect_train(tmp_path / "d", tmp_path / "runs")
    assert out.returncode == 0, out.stderr
    assert warnings_of(out) == [f"{bad}: cannot decode image (image file is truncated) (skipped)"]


# ------------------------------------------------------------------ detection, YOLO and VOC (readers)

def test_yolo_unknown_class_and_bad_boxes_name_file_and_line(tmp_path):
    from visiontk.data.formats.yolo import read_yolo

    _square(tmp_path / "images" / "train" / "a.png")
    (tmp_path / "labels" / "train").mkdir(parents=True)
    label = tmp_path / "labels" / "train" / "a.txt"
    label.write_text("0 0.5 0.5 0.2 0.2\n5 0.5 0.5 0.2 0.2\n0 0.5 0.5 0 0.3\n0 1.5 1.5 0.2 0.2\n0 0.5 0.5\n")
    (tmp_path / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [box, ball]\n")
    found = read_yolo(tmp_path / "data.yaml", "train")
    assert found.report.messages == [
        f"{label}:2: class id 5 is not in names (0..1) (skipped)",
        f"{label}:3: zero or negative size (w=0, h=9.6) (skipped)",
        f"{label}:4: box [44.8, 44.8, 51.2, 51.2] is entirely outside the 32x32 image (skipped)",
        f"{label}:5: expected 5 fields 'class cx cy w h', got 3 (skipped)",
    ]
    assert found.records[0].labels.tolist() == [0]
    with pytest.raises(DataError, match=r"^" + str(label).replace(".", r"\.") + r":2: class id 5 is not in names"):
        read_yolo(tmp_path / "data.yaml", "train", policy="error")


def test_voc_filename_escaping_the_image_folder_is_refused(tmp_path):
    from visiontk.data.formats.voc import read_voc

    (tmp_path / "Annotations").mkdir()
    _square(tmp_path / "JPEGImages" / "a.png")
    xml = tmp_path / "Annotations" / "a.xml"
    xml.write_text("<annotation><filename>../../../etc/passwd</filename><size><width>32</width><height>32</height>"
                   "</size><object><name>box</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax>"
                   "</bndbox></object></annotation>")
    found = read_voc(tmp_path / "Annotations", tmp_path / "JPEGImages")
    assert found.records == [] and found.report.messages == [
        f"{xml}: filename '../../../etc/passwd' escapes the image directory {tmp_path / 'JPEGImages'} (skipped)"]


# ------------------------------------------------------------------ segmentation

def mask_set(root: Path, bad: dict[str, np.ndarray]) -> None:
    """4 good image/mask pairs per split (classes 0, 1); `bad` {name: mask} added to train."""
    for split in ("train", "val"):
        for i in range(4):
            _square(root / split / "images" / f"{i}.png")
            m = np.zeros((32, 32), np.uint8)
            m[8:20, 6:18] = 1
            (root / split / "masks").mkdir(parents=True, exist_ok=True)
            Image.fromarray(m).save(root / split / "masks" / f"{i}.png")
    for name, mask in bad.items():
        _square(root / "train" / "images" / f"{name}.png")
        Image.fromarray(mask).save(root / "train" / "masks" / f"{name}.png")


OUT_OF_RANGE = np.zeros((32, 32), np.uint8)
OUT_OF_RANGE[0, 0] = 7
BAD_MASKS = {
    "wrong-size": (np.zeros((16, 24), np.uint8), "mask size 24x16 differs from image wrong-size.png size 32x32"),
    "out-of-range": (OUT_OF_RANGE, "class values 7 >= num_classes 2 (only 255 = ignore is allowed above)"),
}
SEGMENT_TINY = ["--set", "model.backbone=tinycnn", "--set", "model.backbone_options.width=4", "--set", "data.image_size=32",
                "--set", "train.epochs=1", "--set", "train.batch_size=2", "--set", "output.plots=false",
                "--set", "train.warmup_iters=0", "--set", "data.augment=[]", "--set", "train.workers=0"]


def segment_train(root: Path, runs: Path, *extra: str):
    return invoke("segment", "train", "segment/masks", "--set", f"data.root={root}", *SEGMENT_TINY, *extra,
                  "--project", runs)


@needs_segment
def test_bad_masks_are_warned_and_skipped(tmp_path):
    mask_set(tmp_path / "d", {k: v[0] for k, v in BAD_MASKS.items()})
    out = segment_train(tmp_path / "d", tmp_path / "runs")
    assert out.returncode == 0, out.stderr
    masks = tmp_path / "d" / "train" / "masks"
    assert sorted(warnings_of(out)) == sorted(f"{masks / (k + '.png')}: {v[1]} (skipped)" for k, v in BAD_MASKS.items())
    assert "4 train / 4 val images" in out.stderr


@needs_segment
@pytest.mark.parametrize("case", list(BAD_MASKS))
def test_bad_mask_with_policy_error_stops_with_that_line(tmp_path, case):
    mask_set(tmp_path / "d", {case: BAD_MASKS[case][0]})
    out = segment_train(tmp_path / "d", tmp_path / "runs", "--set", "data.bad_annotations=error")
    assert_error(out, f"{tmp_path / 'd' / 'train' / 'masks' / (case + '.png')}: {BAD_MASKS[case][1]}")


@needs_segment
def test_unreadable_image_in_a_segmentation_set_is_skipped(tmp_path):
    """Its header is whole (32 x 32, as its mask): reading the set takes it, decoding it in
    training skips it. (Reading sizes decodes no pixels: a huge PNG costs nothing there.)"""
    from .support import encoded, pattern_image

    mask_set(tmp_path / "d", {})
    bad = tmp_path / "d" / "train" / "images" / "1.png"
    whole = encoded(pattern_image(32, 32), "PNG")
    bad.write_bytes(whole[: len(whole) // 2])
    out = segment_train(tmp_path / "d", tmp_path / "runs")
    assert out.returncode == 0, out.stderr
    assert warnings_of(out) == [f"{bad}: cannot decode image (image file is truncated) (skipped)"]


def test_segmentation_coco_file_name_escaping_the_root_is_refused(tmp_path):
    from visiontk.data.formats.coco import read_coco
    from visiontk.tasks.segment.formats import coco_mask_records

    _square(tmp_path / "images" / "a.png")
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": [{"id": 1, "file_name": "../../etc/passwd", "width": 32, "height": 32},
                                          {"id": 2, "file_name": "a.png", "width": 32, "height": 32}],
                               "annotations": [], "categories": [{"id": 1, "name": "box"}]}))
    records, names = coco_mask_records(read_coco(ann, tmp_path / "images", policy="skip"), None)
    assert [r.image.name for r in records] == ["a.png"] and names == ["background", "box"]
    with pytest.raises(DataError) as e:
        read_coco(ann, tmp_path / "images", policy="error")
    assert str(e.value) == f"{ann}: image id 1: file_name '../../etc/passwd' escapes the image root {tmp_path / 'images'}"


@needs_segment
def test_segment_predict_never_writes_over_its_input_images(tmp_path):
    """--out-dir is the input folder: masks get new names, every input keeps its bytes."""
    mask_set(tmp_path / "d", {})
    out = segment_train(tmp_path / "d", tmp_path / "runs", "--name", "seg")
    assert out.returncode == 0, out.stderr
    folder = tmp_path / "d" / "val" / "images"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    out = invoke("segment", "predict", tmp_path / "runs" / "segment" / "seg" / "best.pt", folder, "--out-dir", folder)
    assert out.returncode == 0, out.stderr
    after = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert {k: after[k] for k in before} == before
    assert sorted(set(after) - set(before)) == [f"{i}-2.png" for i in range(4)]

    # --out-dir inside the input folder, twice: the first run's masks are not read back as images.
    masks = folder / "masks"
    for run in range(2):
        out = invoke("segment", "predict", tmp_path / "runs" / "segment" / "seg" / "best.pt", folder, "--out-dir", masks)
        assert out.returncode == 0, out.stderr
        assert sorted(json.loads(line)["path"] for line in out.stdout.splitlines()) == \
            sorted(str(folder / n) for n in after)
        assert warnings_of(out) == [f"{masks}: output folder; the images in it are not read as inputs"] * (run == 1)
