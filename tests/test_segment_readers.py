"""Segmentation records from the formats layer: masks loaded and checked under the policy, COCO classes mapped."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visiontk.data.formats import issues as issues_module
from visiontk.data.formats.coco import read_coco
from visiontk.data.formats.masks import read_mask_folders
from visiontk.errors import DataError
from visiontk.tasks.segment.formats import coco_mask_records, mask_records
from visiontk.tasks.segment.readers import SegmentationRecord, check_records, load_mask


@pytest.fixture
def warnings(monkeypatch):
    seen = []
    monkeypatch.setattr(issues_module, "warn", seen.append)
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


def write_mask(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode="L").save(path)


MASK = np.array([[0, 0, 1, 1], [2, 2, 255, 1], [0, 1, 2, 0]], dtype=np.uint8)


def folder_records(images, masks, policy="error"):
    return mask_records(read_mask_folders(images, masks, policy=policy))


def test_exif_rotated_image_is_compared_with_its_displayed_size(tmp_path):
    write_image(tmp_path / "img/r.jpg", 4, 6, exif_orientation=6)  # displayed 6 high, 4 wide
    write_mask(tmp_path / "masks/r.png", np.zeros((6, 4)))
    assert len(check_records(folder_records(tmp_path / "img", tmp_path / "masks"), 2)) == 1


def _bad_folder(tmp_path):
    write_image(tmp_path / "img/good.png", 3, 4)
    write_image(tmp_path / "img/small.png", 3, 4)
    write_image(tmp_path / "img/range.png", 3, 4)
    write_mask(tmp_path / "masks/good.png", MASK)
    write_mask(tmp_path / "masks/small.png", MASK[:2])
    bad_values = MASK.copy()
    bad_values[0, 0] = 7
    write_mask(tmp_path / "masks/range.png", bad_values)
    return tmp_path / "img", tmp_path / "masks"


def test_bad_masks_with_policy_skip_are_warned_and_dropped(tmp_path, warnings):
    images, masks = _bad_folder(tmp_path)
    found = read_mask_folders(images, masks, policy="skip")
    records = check_records(mask_records(found), num_classes=3, policy="skip", report=found.report)
    assert [r.image.name for r in records] == ["good.png"]
    assert warnings == [
        f"{masks / 'range.png'}: class values 7 >= num_classes 3 (only 255 = ignore is allowed above) (skipped)",
        f"{masks / 'small.png'}: mask size 4x2 differs from image small.png size 4x3 (skipped)",
    ]
    assert dict(found.report.counts) == {"bad_mask": 2}


@pytest.mark.parametrize("bad,message", [("small", "small.png: mask size"), ("range", "range.png: class values 7")])
def test_bad_masks_with_policy_error_raise_data_error(tmp_path, bad, message):
    images, masks = _bad_folder(tmp_path)
    for other in {"small", "range"} - {bad}:
        (images / f"{other}.png").unlink()
    with pytest.raises(DataError, match=message) as info:
        check_records(folder_records(images, masks), num_classes=3, policy="error")
    assert "\n" not in str(info.value)


def test_rgb_mask_is_a_bad_mask(tmp_path):
    write_image(tmp_path / "img/a.png", 3, 4)
    write_image(tmp_path / "masks/a.png", 3, 4)  # an RGB picture, not an index mask
    with pytest.raises(DataError, match="mask mode 'RGB'"):
        check_records(folder_records(tmp_path / "img", tmp_path / "masks"), None)


def test_value_table_applies_to_the_loaded_mask(tmp_path):
    write_mask(tmp_path / "m.png", [[0, 255], [255, 0]])
    table = tuple([0] + [-1] * 254 + [1])
    record = SegmentationRecord(image=Path("x.png"), mask=tmp_path / "m.png", values=table)
    assert load_mask(record).tolist() == [[0, 1], [1, 0]]


def test_record_without_mask():
    with pytest.raises(DataError, match="no mask"):
        load_mask(SegmentationRecord(image=Path("x.jpg")))


# ------------------------------------------------------------------- COCO

H, W = 10, 12


def _coco(tmp_path, extra_images=()):
    write_image(tmp_path / "images/one.jpg", H, W)
    write_image(tmp_path / "images/two.jpg", H, W)
    data = {
        "images": [{"id": 1, "file_name": "one.jpg", "height": H, "width": W},
                   {"id": 2, "file_name": "two.jpg", "height": H, "width": W}, *extra_images],
        "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 7, "segmentation": [[1, 2, 5, 2, 5, 6, 1, 6]]},
            {"id": 2, "image_id": 1, "category_id": 3, "segmentation": [[6, 6, 11, 6, 11, 9, 6, 9]]},
        ],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_categories_become_mask_values_in_id_order(tmp_path):
    records, names = coco_mask_records(read_coco(_coco(tmp_path), tmp_path / "images"), None)
    assert names == ["background", "cat", "dog"]  # ids 3, 7 -> 1, 2
    mask = load_mask(records[0])
    assert mask[3, 2] == 2 and mask[7, 8] == 1 and mask[0, 0] == 0
    assert (load_mask(records[1]) == 0).all()  # no objects: all background


def test_coco_class_names_choose_and_order_categories(tmp_path):
    found = read_coco(_coco(tmp_path), tmp_path / "images")
    records, names = coco_mask_records(found, ["dog"])
    assert names == ["background", "dog"]
    assert set(np.unique(load_mask(records[0]))) == {0, 1}  # cats are background now
    records, names = coco_mask_records(found, ["dog", "cat"])
    assert names == ["background", "dog", "cat"] and load_mask(records[0])[7, 8] == 2
    with pytest.raises(DataError, match=r"instances.json: categories \['bird'\] not found"):
        coco_mask_records(found, ["bird"])


def test_coco_size_differing_from_the_image_is_a_bad_mask(tmp_path, warnings):
    write_image(tmp_path / "images/wrong.jpg", H, W)
    found = read_coco(_coco(tmp_path, [{"id": 5, "file_name": "wrong.jpg", "height": H + 1, "width": W}]),
                      tmp_path / "images")
    records, names = coco_mask_records(found, None)
    kept = check_records(records, len(names), "skip")
    assert [r.image.name for r in kept] == ["one.jpg", "two.jpg"]
    assert len(warnings) == 1 and "mask size 12x11 differs from image wrong.jpg size 12x10" in warnings[0]


def test_black_and_white_masks_read_as_indices_are_warned_about(tmp_path, monkeypatch):
    """Found on ISBI 2012 (labels stored 0/255): 255 is ignore, so read as class indices the
    masks held class 0 alone and training and `data check` said nothing. With mask_values
    {0: 0, 255: 1} (or any mask holding class 1) there is no such line."""
    from visiontk.tasks.segment import readers

    said = []
    monkeypatch.setattr(readers, "warn", said.append)
    write_image(tmp_path / "img/a.png", 3, 4)
    write_mask(tmp_path / "masks/a.png", [[0, 0, 255, 255]] * 3)
    records = folder_records(tmp_path / "img", tmp_path / "masks")
    assert len(check_records(records, num_classes=2)) == 1
    assert len(said) == 1 and "only 0 and 255" in said[0] and "mask_values: {0: 0, 255: 1}" in said[0]
    assert str(tmp_path / "masks/a.png") in said[0]
    said.clear()
    table = tuple([0] + [-1] * 254 + [1])
    check_records([dataclasses.replace(r, values=table) for r in records], num_classes=2)
    write_mask(tmp_path / "masks/a.png", [[0, 1, 255, 255]] * 3)  # a class-1 pixel: a set with an ignore border
    check_records(records, num_classes=2)
    assert said == []
