"""Readers on small fixtures written here: mask folders, VOC palette, COCO polygons/RLE."""
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from visiontk.errors import DataError
from visiontk.tasks.segment import readers
from visiontk.tasks.segment.readers import (
    SegmentationRecord,
    load_mask,
    read_coco_segmentation,
    read_mask_folders,
    read_voc_segmentation,
    safe_join,
)


@pytest.fixture
def warnings(monkeypatch):
    seen = []
    monkeypatch.setattr(readers, "warn", seen.append)
    return seen


def write_image(path, h, w, exif_orientation=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8))
    if exif_orientation is None:
        im.save(path)
    else:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        im.save(path, exif=exif)


def write_mask(path, array, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(np.asarray(array, dtype=np.uint8), mode="L")
    if mode == "P":
        im = im.convert("P")  # same indices, now a palette image
        palette = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (3 * 252) + [224, 224, 192]
        im.putpalette(palette)
    im.save(path)


MASK = np.array([[0, 0, 1, 1], [2, 2, 255, 1], [0, 1, 2, 0]], dtype=np.uint8)


def test_mask_folders_pair_by_stem_including_subfolders(tmp_path):
    write_image(tmp_path / "img/a.jpg", 3, 4)
    write_image(tmp_path / "img/sub/b.png", 3, 4)
    write_mask(tmp_path / "masks/a.png", MASK)
    write_mask(tmp_path / "masks/sub/b.png", MASK[::-1])
    records = read_mask_folders(tmp_path / "img", tmp_path / "masks", num_classes=3)
    assert [(r.image.name, r.mask.name) for r in records] == [("a.jpg", "a.png"), ("b.png", "b.png")]
    assert records[1].mask.parent.name == "sub"
    a = load_mask(records[0])
    assert a.dtype == np.uint8 and np.array_equal(a, MASK)
    assert np.array_equal(load_mask(records[1]), MASK[::-1])


def test_masks_folder_inside_images_folder_is_not_read_as_images(tmp_path):
    write_image(tmp_path / "data/a.jpg", 3, 4)
    write_mask(tmp_path / "data/masks/a.png", MASK)
    records = read_mask_folders(tmp_path / "data", tmp_path / "data/masks", num_classes=3)
    assert [r.image.name for r in records] == ["a.jpg"]


def test_palette_masks_are_read_as_indices(tmp_path):
    """VOC layout; 'P' masks with a 255 border. Index 1 is dark red: luminance would be 38."""
    voc = tmp_path / "VOC"
    mask = np.full((6, 8), 255, dtype=np.uint8)
    mask[1:-1, 1:-1] = 0
    mask[2:4, 2:5] = 1
    mask[3:5, 5:7] = 20
    write_image(voc / "JPEGImages/2007_000001.jpg", 6, 8)
    write_image(voc / "JPEGImages/2007_000002.jpg", 6, 8)
    write_mask(voc / "SegmentationClass/2007_000001.png", mask, mode="P")
    write_mask(voc / "SegmentationClass/2007_000002.png", np.zeros((6, 8)), mode="P")
    (voc / "ImageSets/Segmentation").mkdir(parents=True)
    (voc / "ImageSets/Segmentation/train.txt").write_text("2007_000001\n")
    assert Image.open(voc / "SegmentationClass/2007_000001.png").mode == "P"

    records = read_voc_segmentation(voc, "train", num_classes=21)
    assert [r.image.name for r in records] == ["2007_000001.jpg"]
    assert np.array_equal(load_mask(records[0]), mask)
    assert len(read_voc_segmentation(voc, None)) == 2
    # the generic folder reader reads palette masks the same way
    records = read_mask_folders(voc / "JPEGImages", voc / "SegmentationClass", num_classes=21)
    assert np.array_equal(load_mask(records[0]), mask)


def test_exif_rotated_image_is_compared_with_its_displayed_size(tmp_path):
    write_image(tmp_path / "img/r.jpg", 4, 6, exif_orientation=6)  # displayed 6 high, 4 wide
    write_mask(tmp_path / "masks/r.png", np.zeros((6, 4)))
    assert len(read_mask_folders(tmp_path / "img", tmp_path / "masks", num_classes=2)) == 1


def _bad_folder(tmp_path):
    write_image(tmp_path / "img/good.png", 3, 4)
    write_image(tmp_path / "img/small.png", 3, 4)
    write_image(tmp_path / "img/range.png", 3, 4)
    write_image(tmp_path / "img/nomask.png", 3, 4)
    write_mask(tmp_path / "masks/good.png", MASK)
    write_mask(tmp_path / "masks/small.png", MASK[:2])
    bad_values = MASK.copy()
    bad_values[0, 0] = 7
    write_mask(tmp_path / "masks/range.png", bad_values)
    return tmp_path / "img", tmp_path / "masks"


def test_bad_masks_with_policy_skip_are_warned_and_dropped(tmp_path, warnings):
    images, masks = _bad_folder(tmp_path)
    records = read_mask_folders(images, masks, num_classes=3, policy="skip")
    assert [r.image.name for r in records] == ["good.png"]
    assert len(warnings) == 3
    text = "\n".join(warnings)
    assert "nomask.png: no mask" in text
    assert "small.png: mask size 4x2 differs from image small.png size 4x3" in text
    assert "range.png: class values 7 >= num_classes 3" in text
    assert all(w.endswith("skipped") and "\n" not in w for w in warnings)


@pytest.mark.parametrize(
    "bad,message",
    [
        ("nomask", "nomask.png: no mask"),
        ("small", "small.png: mask size"),
        ("range", "range.png: class values 7"),
    ],
)
def test_bad_masks_with_policy_error_raise_data_error(tmp_path, bad, message):
    images, masks = _bad_folder(tmp_path)
    for other in {"nomask", "small", "range"} - {bad}:
        (images / f"{other}.png").unlink()
    with pytest.raises(DataError, match=message) as info:
        read_mask_folders(images, masks, num_classes=3, policy="error")
    assert "\n" not in str(info.value)


def test_rgb_mask_is_reported(tmp_path):
    write_image(tmp_path / "img/a.png", 3, 4)
    write_image(tmp_path / "masks/a.png", 3, 4)  # an RGB picture, not an index mask
    with pytest.raises(DataError, match="mask mode 'RGB'"):
        read_mask_folders(tmp_path / "img", tmp_path / "masks")


# ------------------------------------------------------------------- COCO

H, W = 10, 12


def _coco(tmp_path, extra_images=()):
    write_image(tmp_path / "images/one.jpg", H, W)
    write_image(tmp_path / "images/two.jpg", H, W)
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
            {"id": 1, "image_id": 1, "category_id": 7, "iscrowd": 0,
             "segmentation": [[1, 2, 5, 2, 5, 6, 1, 6]]},
            {"id": 2, "image_id": 1, "category_id": 3, "iscrowd": 1, "segmentation": uncompressed},
            {"id": 3, "image_id": 1, "category_id": 3, "iscrowd": 0, "segmentation": compressed},
            {"id": 4, "image_id": 2, "category_id": 7, "bbox": [0, 0, 2, 2]},  # no mask: ignored
        ],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_polygons_and_both_rle_kinds(tmp_path):
    records, names = read_coco_segmentation(_coco(tmp_path), tmp_path / "images")
    assert names == ["background", "cat", "dog"]  # ids 3, 7 -> 1, 2
    assert [r.image.name for r in records] == ["one.jpg", "two.jpg"]
    mask = load_mask(records[0])
    assert mask.shape == (H, W) and mask.dtype == np.uint8
    expected = np.zeros((H, W), dtype=np.uint8)
    expected[2:6, 1:5] = 2  # polygon x 1..5, y 2..6 -> dog
    expected[0:2, 0:2] = 1  # uncompressed RLE -> cat
    expected[6:8, 8:11] = 1  # compressed RLE -> cat
    assert np.array_equal(mask, expected)
    assert (load_mask(records[1]) == 0).all()  # box-only annotation paints nothing


def test_coco_class_names_choose_and_order_categories(tmp_path):
    records, names = read_coco_segmentation(_coco(tmp_path), tmp_path / "images", class_names=["dog"])
    assert names == ["background", "dog"]
    mask = load_mask(records[0])
    assert set(np.unique(mask)) == {0, 1}  # cats are background now
    with pytest.raises(DataError, match="not found"):
        read_coco_segmentation(_coco(tmp_path), tmp_path / "images", class_names=["bird"])


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "sub/../../outside.jpg"])
def test_coco_file_name_escaping_the_root_is_refused(tmp_path, warnings, name):
    escape = [{"id": 9, "file_name": name, "height": H, "width": W}]
    ann = _coco(tmp_path, escape)
    with pytest.raises(DataError, match="escapes the image root"):
        read_coco_segmentation(ann, tmp_path / "images")
    records, _ = read_coco_segmentation(ann, tmp_path / "images", policy="skip")
    assert [r.image.name for r in records] == ["one.jpg", "two.jpg"]
    assert len(warnings) == 1 and "escapes the image root" in warnings[0]


def test_safe_join():
    assert safe_join("/data/images", "a/b.jpg").as_posix() == "/data/images/a/b.jpg"
    assert safe_join("/data/images", "a/../b.jpg").as_posix() == "/data/images/b.jpg"
    assert safe_join("/data/images", "../images2/x.jpg") is None
    assert safe_join("/data/images", "") is None


def test_coco_size_mismatch_and_missing_image(tmp_path, warnings):
    extra = [
        {"id": 5, "file_name": "wrong.jpg", "height": H + 1, "width": W},
        {"id": 6, "file_name": "absent.jpg", "height": H, "width": W},
    ]
    write_image(tmp_path / "images/wrong.jpg", H, W)
    ann = _coco(tmp_path, extra)
    with pytest.raises(DataError, match="absent.jpg: image listed in instances.json is missing"):
        read_coco_segmentation(ann, tmp_path / "images")
    records, _ = read_coco_segmentation(ann, tmp_path / "images", policy="skip")
    assert [r.image.name for r in records] == ["one.jpg", "two.jpg"]
    assert any("mask size 12x11 differs from image wrong.jpg size 12x10" in w for w in warnings)


def test_record_without_mask():
    with pytest.raises(DataError, match="no mask"):
        load_mask(SegmentationRecord(image=readers.Path("x.jpg")))
