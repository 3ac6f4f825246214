"""COCO instances json -> AnnotatedSet: boxes, regions, ids, bad entries under both policies."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from visiontk.data.formats import issues as issues_module
from visiontk.data.formats.coco import rasterize, read_coco
from visiontk.data.formats.records import AnnotatedImage
from visiontk.errors import DataError


def _png(path: Path, w: int = 20, h: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (120, 30, 200)).save(path)
    return path


def _by_name(records):
    return {Path(r.image).name: r for r in records}


@pytest.fixture
def warnings(monkeypatch):
    seen = []
    monkeypatch.setattr(issues_module, "warn", seen.append)
    return seen


# ---------------------------------------------------------------------- boxes

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


def test_skip_policy_reports_and_skips_everything_bad(tmp_path, capsys):
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
        {"id": 7, "image_id": 1, "category_id": 3},  # no bbox (and no region)
        _ann(8, [1, 1, 2, 2], image_id=42),  # unknown image
        _ann(9, [1, 2, 3]),  # bbox of 3 numbers
        _ann(10, [1, 1, 5, 5], iscrowd=1),  # crowd: not a box, counted apart
        _ann(11, [1, 1, 5, 5], image_id=3),  # on the missing image: skipped with it
        _ann(12, [19.8, 0, 0.5, 2]),  # overshoot 0.3 px: rounding, clipped silently
    ]
    path = _write_coco(tmp_path, images, anns)
    found = read_coco(path, tmp_path / "imgs")
    assert found.classes == ["cat", "dog"] and found.category_ids == [3, 7]
    recs = _by_name(found.records)
    assert set(recs) == {"a.png", "b.png"}
    a = recs["a.png"]
    assert isinstance(a, AnnotatedImage) and (a.height, a.width) == (10, 20)
    assert a.boxes.dtype == np.float32 and a.labels.dtype == np.int64
    np.testing.assert_allclose(a.boxes, [[2, 1, 7, 5], [15, 5, 20, 10], [19.8, 0, 20, 2]], atol=1e-5)
    assert a.labels.tolist() == [0, 1, 0]
    assert recs["b.png"].boxes.shape == (0, 4) and recs["b.png"].labels.shape == (0,)
    report = found.report
    assert dict(report.counts) == {
        "box_clipped": 1, "box_outside": 1, "box_empty": 2, "unknown_class": 1,
        "malformed": 4, "missing_image": 1, "unsafe_path": 1,
    }
    assert report.crowd == 1
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
    "bad region without bbox": ([GOOD_IMAGE], [{"id": 5, "image_id": 1, "category_id": 3, "segmentation": [[1, 2]]}],
                                "annotation id 5"),
    "missing image file": ([{**GOOD_IMAGE, "file_name": "nope.png"}], [], "image id 1"),
    "escaping file name": ([{**GOOD_IMAGE, "file_name": "../../etc/passwd"}], [], "image id 1"),
    "absolute file name": ([{**GOOD_IMAGE, "file_name": "/etc/passwd"}], [], "image id 1"),
    "missing height": ([{k: v for k, v in GOOD_IMAGE.items() if k != "height"}], [], "image id 1"),
}


@pytest.mark.parametrize("case", list(COCO_BAD))
def test_error_policy_names_file_and_annotation(tmp_path, case):
    images, anns, where = COCO_BAD[case]
    path = _write_coco(tmp_path, images, anns, name="bad.json")
    assert read_coco(path, tmp_path / "imgs", policy="skip").report.total == 1
    with pytest.raises(DataError) as e:
        read_coco(path, tmp_path / "imgs", policy="error")
    msg = str(e.value)
    assert "bad.json" in msg and where in msg and "\n" not in msg


def test_unreadable_or_incomplete_json(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('{"images": [')
    with pytest.raises(DataError, match="broken.json"):
        read_coco(bad, tmp_path)
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"images": [], "categories": []}))
    with pytest.raises(DataError, match=r"partial.json.*'annotations'"):
        read_coco(partial, tmp_path)
    with pytest.raises(DataError, match="nothere.json: no such file"):
        read_coco(tmp_path / "nothere.json", tmp_path)


def test_policy_value_is_checked(tmp_path):
    path = _write_coco(tmp_path, [GOOD_IMAGE], [])
    with pytest.raises(ValueError):
        read_coco(path, tmp_path / "imgs", policy="ignore")


def test_original_category_and_image_ids_are_kept(tmp_path):
    images = [{"id": 42, "file_name": "a.png", "width": 20, "height": 10},
              {"id": "img-7", "file_name": "b.png", "width": 20, "height": 10}]
    categories = [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]
    anns = [_ann(1, [1, 1, 4, 4], cat=90, image_id=42), _ann(2, [2, 2, 4, 4], cat=18, image_id="img-7")]
    found = read_coco(_write_coco(tmp_path, images, anns, categories), tmp_path / "imgs")
    assert found.classes == ["person", "dog", "toothbrush"] and found.category_ids == [1, 18, 90]
    a, b = found.records
    assert (a.image_id, b.image_id) == (42, "img-7")
    assert [found.category_ids[k] for k in a.labels] == [90] and [found.category_ids[k] for k in b.labels] == [18]


def test_region_only_annotation_gets_the_box_of_its_region(tmp_path):
    block = np.zeros((10, 20), dtype=np.uint8, order="F")
    block[2:5, 6:9] = 1
    rle = mask_utils.encode(block)
    rle["counts"] = rle["counts"].decode()
    anns = [{"id": 1, "image_id": 1, "category_id": 3, "segmentation": [[1, 2, 5, 2, 5, 6, 1, 6], [8, 1, 9, 1, 9, 3]]},
            {"id": 2, "image_id": 1, "category_id": 7, "segmentation": rle},
            {"id": 3, "image_id": 1, "category_id": 7, "segmentation": rle, "iscrowd": 1}]
    found = read_coco(_write_coco(tmp_path, [GOOD_IMAGE], anns), tmp_path / "imgs", policy="error")
    (rec,) = found.records
    np.testing.assert_allclose(rec.boxes, [[1, 1, 9, 6], [6, 2, 9, 5]])
    assert rec.labels.tolist() == [0, 1]
    # every region is kept for masks, the crowd one included; the crowd one is no box
    assert [(s.label, s.crowd) for s in rec.segments] == [(0, False), (1, False), (1, True)]
    assert found.report.crowd == 1


# ---------------------------------------------------------------------- regions

H, W = 10, 12


def _write_image(path, h, w):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def _regions(tmp_path, extra_images=()):
    _write_image(tmp_path / "images/one.jpg", H, W)
    _write_image(tmp_path / "images/two.jpg", H, W)
    # compressed RLE of a 2x3 block at rows 6-7, cols 8-10
    block = np.zeros((H, W), dtype=np.uint8, order="F")
    block[6:8, 8:11] = 1
    compressed = mask_utils.encode(block)
    compressed["counts"] = compressed["counts"].decode()  # as stored in JSON
    # uncompressed RLE (column-major run lengths): rows 0-1 of column 0 and 1
    uncompressed = {"size": [H, W], "counts": [0, 2, 8, 2, H * W - 12]}
    data = {
        "images": [
            {"id": 1, "file_name": "one.jpg", "height": H, "width": W},
            {"id": 2, "file_name": "two.jpg", "height": H, "width": W},
            *extra_images,
        ],
        "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}],
        "annotations": [
            # polygon: the square x 1..5, y 2..6 (pixel centres inside it)
            {"id": 1, "image_id": 1, "category_id": 7, "iscrowd": 0, "segmentation": [[1, 2, 5, 2, 5, 6, 1, 6]]},
            {"id": 2, "image_id": 1, "category_id": 3, "iscrowd": 1, "segmentation": uncompressed},
            {"id": 3, "image_id": 1, "category_id": 3, "iscrowd": 0, "segmentation": compressed},
            {"id": 4, "image_id": 2, "category_id": 7, "bbox": [0, 0, 2, 2]},  # no region: paints nothing
        ],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


def test_polygons_and_both_rle_kinds_are_rasterised_largest_first(tmp_path):
    found = read_coco(_regions(tmp_path), tmp_path / "images", policy="error")
    assert found.classes == ["cat", "dog"]
    one, two = found.records
    assert (one.image.name, two.image.name) == ("one.jpg", "two.jpg")
    mask = rasterize(one.height, one.width, [(s.label + 1, s.segmentation) for s in one.segments], "x", "one.jpg")
    assert mask.shape == (H, W) and mask.dtype == np.uint8
    expected = np.zeros((H, W), dtype=np.uint8)
    expected[2:6, 1:5] = 2  # polygon x 1..5, y 2..6 -> dog
    expected[0:2, 0:2] = 1  # uncompressed RLE, crowd -> painted with its class
    expected[6:8, 8:11] = 1  # compressed RLE -> cat
    assert np.array_equal(mask, expected)
    assert two.segments == () and len(two.boxes) == 1
    # the small object on top of a large one stays visible, whatever the order in the file
    big, small = [[0, 0, 12, 0, 12, 10, 0, 10]], [[2, 2, 6, 2, 6, 6, 2, 6]]
    for objects in ([(1, big), (2, small)], [(2, small), (1, big)]):
        assert set(np.unique(rasterize(H, W, objects, "x", "y")[2:6, 2:6])) == {2}


def test_bad_region_is_a_data_error_naming_file_and_image():
    with pytest.raises(DataError, match=r"ann.json: bad segmentation for a.png"):
        rasterize(H, W, [(1, {"size": [H + 1, W], "counts": "xx"})], "ann.json", "a.png")


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "sub/../../outside.jpg"])
def test_file_name_escaping_the_root_is_refused(tmp_path, warnings, name):
    ann = _regions(tmp_path, [{"id": 9, "file_name": name, "height": H, "width": W}])
    with pytest.raises(DataError, match=f"image id 9: file_name '{name}' escapes the image root"):
        read_coco(ann, tmp_path / "images", policy="error")
    found = read_coco(ann, tmp_path / "images", policy="skip")
    assert [r.image.name for r in found.records] == ["one.jpg", "two.jpg"]
    assert warnings == [f"{ann}: image id 9: file_name '{name}' escapes the image root {tmp_path / 'images'} (skipped)"]
    assert dict(found.report.counts) == {"unsafe_path": 1}


def test_missing_image_is_named(tmp_path):
    ann = _regions(tmp_path, [{"id": 6, "file_name": "absent.jpg", "height": H, "width": W}])
    with pytest.raises(DataError, match=r"image id 6: image file .*absent.jpg not found"):
        read_coco(ann, tmp_path / "images", policy="error")


# ---------------------------------------------------------------------- one parse, both tasks


def test_one_coco_file_gives_detect_its_boxes_and_segment_the_same_images(tmp_path):
    from visiontk.tasks.recipes import recipe_from_dict
    from visiontk.tasks.registry import get_task

    h, w = 24, 32
    for name in ("a.png", "b.png", "c.png"):
        _write_image(tmp_path / "images/val" / name, h, w)

    def rect(x1, y1, x2, y2):
        return [[x1, y1, x2, y1, x2, y2, x1, y2]]

    images = [{"id": 5, "file_name": "a.png", "height": h, "width": w},
              {"id": 9, "file_name": "b.png", "height": h, "width": w},
              {"id": 11, "file_name": "../../outside.png", "height": h, "width": w},  # refused for both
              {"id": 12, "file_name": "c.png", "height": h, "width": w}]  # no objects: kept by both
    annotations = [
        {"id": 1, "image_id": 5, "category_id": 7, "bbox": [2, 3, 10, 8], "segmentation": rect(2, 3, 12, 11)},
        {"id": 2, "image_id": 5, "category_id": 3, "bbox": [16, 4, 12, 16], "segmentation": rect(16, 4, 28, 20)},
        {"id": 3, "image_id": 9, "category_id": 3, "bbox": [0, 0, 32, 24], "segmentation": rect(0, 0, 32, 24),
         "iscrowd": 1},  # a region for segment, no box for detect
        {"id": 4, "image_id": 9, "category_id": 7, "bbox": [4, 4, 8, 8], "segmentation": rect(4, 4, 12, 12)},
    ]
    (tmp_path / "annotations").mkdir()
    ann = tmp_path / "annotations/instances_val.json"
    ann.write_text(json.dumps({"images": images, "annotations": annotations,
                               "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]}))

    detect = recipe_from_dict({"task": "detect", "name": "t", "model": {"backbone": "tinycnn", "head": {"S": 4}},
                               "data": {"format": "coco", "root": str(tmp_path), "image_size": 32}})
    segment = recipe_from_dict({"task": "segment", "name": "t",
                                "data": {"format": "coco", "root": str(tmp_path), "image_size": [h, w]}})
    boxes_set, detect_classes = get_task("detect").build_dataset(detect, "val", train=False)
    masks_set, segment_classes = get_task("segment").build_dataset(segment, "val", train=False)

    found = read_coco(ann, tmp_path / "images/val")
    assert detect_classes == found.classes == ["cat", "dog"] and segment_classes == ["background", "cat", "dog"]
    assert [r.image for r in boxes_set.records] == [r.image for r in masks_set.records] == \
        [tmp_path / "images/val" / n for n in ("a.png", "b.png", "c.png")]
    for mine, read in zip(boxes_set.records, found.records):
        np.testing.assert_array_equal(mine.boxes, read.boxes)
        np.testing.assert_array_equal(mine.labels, read.labels)
    a, b, _ = boxes_set.records
    np.testing.assert_allclose(a.boxes, [[2, 3, 12, 11], [16, 4, 28, 20]])
    np.testing.assert_allclose(b.boxes, [[4, 4, 12, 12]])  # the crowd region is no box

    # Each box holds exactly the pixels its object paints (mask value = label + 1).
    for index, record in enumerate(boxes_set.records[:2]):
        mask = masks_set[index][1].numpy()
        for (x1, y1, x2, y2), label in zip(record.boxes.astype(int), record.labels):
            assert (mask[y1:y2, x1:x2] == label + 1).all()
    assert (masks_set[1][1].numpy() != 0).all()  # b: the crowd's cat everywhere, the dog on top of it
    assert (masks_set[2][1].numpy() == 0).all()
