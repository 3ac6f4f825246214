import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visiontk.errors import DataError
from visiontk.tasks.detect.readers import DetectionRecord, read_coco, read_voc, read_yolo


def _png(path: Path, w: int = 20, h: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (120, 30, 200)).save(path)
    return path


def _by_name(records):
    return {Path(r.image).name: r for r in records}


# ---------------------------------------------------------------------- COCO

GOOD_IMAGE = {"id": 1, "file_name": "a.png", "width": 20, "height": 10}
CATS = [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]  # unsorted ids with gaps


def _write_coco(tmp_path: Path, images, annotations, categories=CATS, name="ann.json") -> Path:
    root = tmp_path / "imgs"
    for f in ("a.png", "b.png", "c.png"):
        if not (root / f).exists():
            _png(root / f)
    path = tmp_path / name
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def _ann(i, bbox, cat=3, image_id=1, **extra):
    return {"id": i, "image_id": image_id, "category_id": cat, "bbox": bbox, **extra}


def test_coco_skip_policy_reports_and_skips_everything_bad(tmp_path, capsys):
    images = [
        GOOD_IMAGE,
        {"id": 2, "file_name": "b.png", "width": 20, "height": 10},  # no boxes: a valid negative
        {"id": 3, "file_name": "missing.png", "width": 20, "height": 10},
        {"id": 4, "file_name": "../../etc/passwd", "width": 20, "height": 10},
        {"id": 5, "file_name": "c.png", "height": 10},  # no width
    ]
    anns = [
        _ann(1, [2, 1, 5, 4]),  # good
        _ann(2, [15, 5, 10, 10], cat=7),  # partly outside -> clipped
        _ann(3, [25, 0, 3, 3]),  # entirely outside -> dropped
        _ann(4, [1, 1, 0, 5]),  # zero width
        _ann(5, [1, 1, -2, 5]),  # negative width
        _ann(6, [1, 1, 2, 2], cat=99),  # unknown category
        {"id": 7, "image_id": 1, "category_id": 3},  # no bbox
        _ann(8, [1, 1, 2, 2], image_id=42),  # unknown image
        _ann(9, [1, 2, 3]),  # bbox of 3 numbers
        _ann(10, [1, 1, 5, 5], iscrowd=1),  # crowd: not a box, counted apart
        _ann(11, [1, 1, 5, 5], image_id=3),  # on the missing image: skipped with it
        _ann(12, [19.8, 0, 0.5, 2]),  # overshoot 0.3 px: rounding, clipped silently
    ]
    path = _write_coco(tmp_path, images, anns)
    records, names, report = read_coco(path, tmp_path / "imgs")
    assert names == ["cat", "dog"]
    recs = _by_name(records)
    assert set(recs) == {"a.png", "b.png"}
    a = recs["a.png"]
    assert isinstance(a, DetectionRecord) and (a.width, a.height) == (20, 10)
    assert a.boxes.dtype == np.float32 and a.labels.dtype == np.int64
    np.testing.assert_allclose(a.boxes, [[2, 1, 7, 5], [15, 5, 20, 10], [19.8, 0, 20, 2]], atol=1e-5)
    assert a.labels.tolist() == [0, 1, 0]
    assert recs["b.png"].boxes.shape == (0, 4) and recs["b.png"].labels.shape == (0,)
    assert dict(report.counts) == {
        "box_clipped": 1, "box_outside": 1, "box_empty": 2, "unknown_class": 1,
        "malformed": 4, "missing_image": 1, "unsafe_path": 1,
    }
    assert report.crowd_skipped == 1
    assert any("annotation id 6" in m and "category_id 99" in m for m in report.messages)
    err = capsys.readouterr().err
    assert "ann.json: annotation id 3" in err and "ann.json: image id 4" in err and "[x, y, w, h]" in err


COCO_BAD = {
    "partly outside": ([GOOD_IMAGE], [_ann(5, [15, 5, 10, 10])], "annotation id 5"),
    "outside": ([GOOD_IMAGE], [_ann(5, [25, 0, 3, 3])], "annotation id 5"),
    "zero size": ([GOOD_IMAGE], [_ann(5, [2, 2, 4, 0])], "annotation id 5"),
    "unknown category": ([GOOD_IMAGE], [_ann(5, [2, 2, 4, 4], cat=1)], "annotation id 5"),
    "missing bbox": ([GOOD_IMAGE], [{"id": 5, "image_id": 1, "category_id": 3}], "annotation id 5"),
    "bad bbox": ([GOOD_IMAGE], [_ann(5, [2, "x", 4, 4])], "annotation id 5"),
    "missing image file": ([{**GOOD_IMAGE, "file_name": "nope.png"}], [], "image id 1"),
    "escaping file name": ([{**GOOD_IMAGE, "file_name": "../../etc/passwd"}], [], "image id 1"),
    "absolute file name": ([{**GOOD_IMAGE, "file_name": "/etc/passwd"}], [], "image id 1"),
    "missing height": ([{k: v for k, v in GOOD_IMAGE.items() if k != "height"}], [], "image id 1"),
}


@pytest.mark.parametrize("case", list(COCO_BAD))
def test_coco_error_policy_names_file_and_annotation(tmp_path, case):
    images, anns, where = COCO_BAD[case]
    path = _write_coco(tmp_path, images, anns, name="bad.json")
    records, _, report = read_coco(path, tmp_path / "imgs", policy="skip")
    assert report.total == 1
    with pytest.raises(DataError) as e:
        read_coco(path, tmp_path / "imgs", policy="error")
    msg = str(e.value)
    assert "bad.json" in msg and where in msg and "\n" not in msg


def test_coco_unreadable_or_incomplete_json(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('{"images": [')
    with pytest.raises(DataError, match="broken.json"):
        read_coco(bad, tmp_path)
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"images": [], "categories": []}))
    with pytest.raises(DataError, match=r"partial.json.*'annotations'"):
        read_coco(partial, tmp_path)
    with pytest.raises(DataError, match="nothere.json"):
        read_coco(tmp_path / "nothere.json", tmp_path)


def test_policy_value_is_checked(tmp_path):
    path = _write_coco(tmp_path, [GOOD_IMAGE], [])
    with pytest.raises(ValueError):
        read_coco(path, tmp_path / "imgs", policy="ignore")


# ---------------------------------------------------------------------- YOLO

YOLO_LINES = [
    "0 0.5 0.5 0.2 0.4",  # 1: good -> [8, 3, 12, 7]
    "1 0.95 0.5 0.2 0.2",  # 2: x 17..21 on a 20 px image -> clipped
    "",  # 3: blank, ignored
    "0 1.5 0.5 0.2 0.2",  # 4: entirely outside
    "0 0.5 0.5 0 0.2",  # 5: zero width
    "5 0.5 0.5 0.1 0.1",  # 6: class 5 of 2
    "0 0.5 abc 0.1 0.1",  # 7: not a number
    "0 0.5 0.5 0.1",  # 8: 4 fields
    "0.5 0.5 0.5 0.1 0.1",  # 9: class not an integer
]


def _yolo_dataset(tmp_path: Path, lines, names="{0: cat, 1: dog}", orphan=False, bad_image=False) -> Path:
    root = tmp_path / "ds"
    for f in ("a.png", "b.png", "c.png"):
        _png(root / "images" / "train" / f)
    _png(root / "images" / "val" / "sub" / "v.png", 30, 40)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "val" / "sub").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("\n".join(lines) + "\n")
    (root / "labels" / "train" / "c.txt").write_text("1 0.25 0.5 0.5 1.0\n")
    (root / "labels" / "val" / "sub" / "v.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    if orphan:
        (root / "labels" / "train" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    if bad_image:
        (root / "images" / "train" / "d.png").write_bytes(b"not a png")
    data = tmp_path / "data.yaml"
    data.write_text(f"path: ds\ntrain: images/train\nval: [images/val]\nnames: {names}\n")
    return data


def test_yolo_skip_policy(tmp_path, capsys):
    data = _yolo_dataset(tmp_path, YOLO_LINES, orphan=True, bad_image=True)
    records, names, report = read_yolo(data, "train")
    assert names == ["cat", "dog"]
    recs = _by_name(records)
    assert set(recs) == {"a.png", "b.png", "c.png"}  # b has no label file: a negative
    np.testing.assert_allclose(recs["a.png"].boxes, [[8, 3, 12, 7], [17, 4, 20, 6]], atol=1e-4)
    assert recs["a.png"].labels.tolist() == [0, 1]
    np.testing.assert_allclose(recs["c.png"].boxes, [[0, 0, 10, 10]], atol=1e-5)
    assert recs["b.png"].boxes.shape == (0, 4)
    assert dict(report.counts) == {
        "box_clipped": 1, "box_outside": 1, "box_empty": 1, "unknown_class": 1,
        "malformed": 3, "orphan_label": 1, "bad_image": 1,
    }
    err = capsys.readouterr().err
    for line in (2, 4, 5, 6, 7, 8, 9):
        assert f"a.txt:{line}:" in err
    assert "orphan.txt" in err and "d.png" in err


def test_yolo_val_split_names_list_and_nested_dirs(tmp_path):
    data = _yolo_dataset(tmp_path, YOLO_LINES[:1], names="[cat, dog]")
    records, names, report = read_yolo(data, "val")
    assert names == ["cat", "dog"] and report.total == 0
    (rec,) = records
    assert (rec.width, rec.height) == (30, 40)
    np.testing.assert_allclose(rec.boxes, [[7.5, 10, 22.5, 30]])


@pytest.mark.parametrize("line_no", [2, 4, 5, 6, 7, 8, 9])
def test_yolo_error_policy_names_file_and_line(tmp_path, line_no):
    data = _yolo_dataset(tmp_path, ["0 0.5 0.5 0.2 0.4", YOLO_LINES[line_no - 1]])
    with pytest.raises(DataError) as e:
        read_yolo(data, "train", policy="error")
    assert "a.txt:2:" in str(e.value)


def test_yolo_error_policy_orphan_label(tmp_path):
    data = _yolo_dataset(tmp_path, YOLO_LINES[:1], orphan=True)
    with pytest.raises(DataError, match="orphan.txt"):
        read_yolo(data, "train", policy="error")


def test_yolo_bad_yaml_and_missing_split(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("names: [a, b\ntrain: x\n")
    with pytest.raises(DataError, match="bad.yaml"):
        read_yolo(bad, "train")
    data = _yolo_dataset(tmp_path, YOLO_LINES[:1])
    with pytest.raises(DataError, match=r"data.yaml.*'test'"):
        read_yolo(data, "test")
    gaps = tmp_path / "gaps.yaml"
    gaps.write_text("path: ds\ntrain: images/train\nnames: {0: a, 2: c}\n")
    with pytest.raises(DataError, match="gaps.yaml"):
        read_yolo(gaps, "train")


# ----------------------------------------------------------------------- VOC


def _voc_xml(filename, objects, size=(20, 10)) -> str:
    fn = f"<filename>{filename}</filename>" if filename is not None else ""
    objs = "".join(
        f"<object><name>{name}</name>"
        + (f"<bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox>" if b else "")
        + "<difficult>0</difficult></object>"
        for name, b in objects
    )
    return f"<annotation>{fn}<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>{objs}</annotation>"


VOC_A = [
    ("cat", (1, 1, 5, 4)),  # 1-based inclusive pixels -> [0, 0, 5, 4]
    ("dog", (1, 1, 20, 10)),  # the whole image -> [0, 0, 20, 10], no clipping
    ("dog", (16, 6, 25, 10)),  # xmax beyond the image -> clipped
    ("cat", (30, 1, 35, 5)),  # entirely outside
    ("cat", (5, 5, 3, 8)),  # xmax < xmin
    ("bird", (2, 2, 6, 6)),  # unknown when class names are given
    ("cat", None),  # no bndbox
]


def _voc_dataset(tmp_path: Path) -> tuple[Path, Path]:
    ann, img = tmp_path / "Annotations", tmp_path / "JPEGImages"
    ann.mkdir()
    _png(img / "a.png")
    _png(img / "e.png", 8, 6)
    (ann / "a.xml").write_text(_voc_xml("a.png", VOC_A))
    (ann / "b.xml").write_text(_voc_xml("missing.png", []))
    (ann / "c.xml").write_text(_voc_xml("../../etc/passwd", []))
    (ann / "d.xml").write_text(_voc_xml(None, []))
    (ann / "e.xml").write_text(_voc_xml("e.png", [], size=(0, 0)))  # size read from the image
    return ann, img


def test_voc_skip_policy_with_given_class_names(tmp_path, capsys):
    ann, img = _voc_dataset(tmp_path)
    records, names, report = read_voc(ann, img, ["cat", "dog"])
    assert names == ["cat", "dog"]
    recs = _by_name(records)
    assert set(recs) == {"a.png", "e.png"}
    np.testing.assert_allclose(recs["a.png"].boxes, [[0, 0, 5, 4], [0, 0, 20, 10], [15, 5, 20, 10]])
    assert recs["a.png"].labels.tolist() == [0, 1, 1]
    assert (recs["e.png"].width, recs["e.png"].height) == (8, 6) and len(recs["e.png"].boxes) == 0
    assert dict(report.counts) == {
        "box_clipped": 1, "box_outside": 1, "box_empty": 1, "unknown_class": 1,
        "malformed": 2, "missing_image": 1, "unsafe_path": 1,
    }
    err = capsys.readouterr().err
    assert "a.xml: object[5] (bird)" in err and "c.xml" in err and "d.xml" in err


def test_voc_class_names_inferred_and_ids(tmp_path):
    ann, img = _voc_dataset(tmp_path)
    records, names, report = read_voc(ann, img, None, ids=["a", "nope"])
    assert names == ["bird", "cat", "dog"]  # sorted: the same files always give the same order
    assert [r.labels.tolist() for r in records] == [[1, 2, 2, 0]]
    assert report.counts["missing_annotation"] == 1 and report.counts["unknown_class"] == 0


@pytest.mark.parametrize("index", [2, 3, 4, 5, 6])
def test_voc_error_policy_bad_objects(tmp_path, index):
    ann, img = tmp_path / "ann", tmp_path / "img"
    ann.mkdir()
    _png(img / "a.png")
    (ann / "x1.xml").write_text(_voc_xml("a.png", [VOC_A[0], VOC_A[index]]))
    with pytest.raises(DataError) as e:
        read_voc(ann, img, ["cat", "dog"], policy="error")
    assert "x1.xml: object[1]" in str(e.value)


@pytest.mark.parametrize("filename", ["missing.png", "../../etc/passwd", None])
def test_voc_error_policy_bad_files(tmp_path, filename):
    ann, img = tmp_path / "ann", tmp_path / "img"
    ann.mkdir()
    img.mkdir()
    (ann / "x2.xml").write_text(_voc_xml(filename, []))
    with pytest.raises(DataError, match="x2.xml"):
        read_voc(ann, img, ["cat"], policy="error")


def test_voc_unreadable_xml(tmp_path):
    ann, img = _voc_dataset(tmp_path)
    (ann / "z.xml").write_text("<annotation><filename>a.png</filename>")
    with pytest.raises(DataError, match="z.xml"):
        read_voc(ann, img, None)


def test_yolo_uses_exif_upright_size(tmp_path):
    # YOLO labels are relative to the image as displayed; an EXIF rotation of
    # 90 degrees swaps its width and height.
    root = tmp_path / "ds"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (20, 10)).save(root / "images" / "train" / "r.jpg", exif=exif)
    (root / "labels" / "train" / "r.txt").write_text("0 0.5 0.25 0.2 0.1\n")
    data = tmp_path / "data.yaml"
    data.write_text("path: ds\ntrain: images/train\nnames: [a]\n")
    (rec,), _, _ = read_yolo(data, "train")
    assert (rec.width, rec.height) == (10, 20)
    np.testing.assert_allclose(rec.boxes, [[4, 4, 6, 6]], atol=1e-5)
