"""Image/mask folder pairs -> AnnotatedSet; index-mask PNGs; stored value -> class tables."""
import numpy as np
import pytest
from PIL import Image

from visiontk.data.formats import issues as issues_module
from visiontk.data.formats.masks import apply_value_table, load_index_mask, read_mask_folders, value_table
from visiontk.errors import DataError


def write_image(path, h, w):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def write_mask(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode="L").save(path)


MASK = np.array([[0, 0, 1, 1], [2, 2, 255, 1], [0, 1, 2, 0]], dtype=np.uint8)


def test_pairs_by_stem_including_subfolders(tmp_path):
    write_image(tmp_path / "img/a.jpg", 3, 4)
    write_image(tmp_path / "img/sub/b.png", 3, 4)
    write_mask(tmp_path / "masks/a.png", MASK)
    write_mask(tmp_path / "masks/sub/b.png", MASK[::-1])
    found = read_mask_folders(tmp_path / "img", tmp_path / "masks", policy="error")
    assert [(r.image.name, r.mask.name) for r in found.records] == [("a.jpg", "a.png"), ("b.png", "b.png")]
    assert [r.image_id for r in found.records] == ["a", "sub/b"] and found.classes is None
    assert [(r.height, r.width) for r in found.records] == [(3, 4), (3, 4)]
    a = load_index_mask(found.records[0].mask)
    assert a.dtype == np.uint8 and np.array_equal(a, MASK)
    assert np.array_equal(load_index_mask(found.records[1].mask), MASK[::-1])


def test_mask_suffix(tmp_path):
    write_image(tmp_path / "img/a.png", 3, 4)
    write_mask(tmp_path / "masks/a_mask.png", MASK)
    (record,) = read_mask_folders(tmp_path / "img", tmp_path / "masks", "_mask", "error").records
    assert record.mask.name == "a_mask.png"


def test_masks_folder_inside_images_folder_is_not_read_as_images(tmp_path):
    write_image(tmp_path / "data/a.jpg", 3, 4)
    write_mask(tmp_path / "data/masks/a.png", MASK)
    found = read_mask_folders(tmp_path / "data", tmp_path / "data/masks")
    assert [r.image.name for r in found.records] == ["a.jpg"]


def test_missing_mask_follows_the_policy(tmp_path, monkeypatch):
    warnings = []
    monkeypatch.setattr(issues_module, "warn", warnings.append)
    write_image(tmp_path / "img/a.png", 3, 4)
    write_image(tmp_path / "img/nomask.png", 3, 4)
    write_mask(tmp_path / "masks/a.png", MASK)
    found = read_mask_folders(tmp_path / "img", tmp_path / "masks")
    assert [r.image.name for r in found.records] == ["a.png"] and dict(found.report.counts) == {"missing_mask": 1}
    assert warnings == [f"{tmp_path / 'img/nomask.png'}: no mask {tmp_path / 'masks/nomask.png'} (skipped)"]
    with pytest.raises(DataError, match=r"nomask.png: no mask"):
        read_mask_folders(tmp_path / "img", tmp_path / "masks", policy="error")


def test_missing_folder_is_a_data_error(tmp_path):
    (tmp_path / "img").mkdir()
    with pytest.raises(DataError, match=r"masks: not a directory"):
        read_mask_folders(tmp_path / "img", tmp_path / "masks")


def test_rgb_mask_is_reported(tmp_path):
    write_image(tmp_path / "masks/a.png", 3, 4)  # an RGB picture, not an index mask
    with pytest.raises(DataError, match="mask mode 'RGB'"):
        load_index_mask(tmp_path / "masks/a.png")


def test_value_table_maps_stored_values_and_names_the_unlisted_ones():
    table = value_table({0: 0, 255: 1})
    stored = np.array([[0, 255], [255, 0]], dtype=np.uint8)
    assert apply_value_table(table, stored, "m.png").tolist() == [[0, 1], [1, 0]]
    with pytest.raises(DataError, match=r"m.png: mask values 7, 128 are not in the value mapping \(data.options.mask_values\)"):
        apply_value_table(table, np.array([[7, 128, 0]], dtype=np.uint8), "m.png")
    assert value_table({3: 1}, unlisted=255)[:4] == (255, 255, 255, 1)
