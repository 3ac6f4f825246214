"""Ultralytics YOLO sets -> AnnotatedSet: label lines, split folders, EXIF-upright sizes."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visiontk.data.formats.yolo import read_yolo
from visiontk.errors import DataError


def _png(path: Path, w: int = 20, h: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (120, 30, 200)).save(path)
    return path


def _by_name(records):
    return {Path(r.image).name: r for r in records}


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


def test_skip_policy(tmp_path, capsys):
    data = _yolo_dataset(tmp_path, YOLO_LINES, orphan=True, bad_image=True)
    found = read_yolo(data, "train")
    assert found.classes == ["cat", "dog"] and found.category_ids == [0, 1]
    recs = _by_name(found.records)
    assert set(recs) == {"a.png", "b.png", "c.png"}  # b has no label file: a negative
    np.testing.assert_allclose(recs["a.png"].boxes, [[8, 3, 12, 7], [17, 4, 20, 6]], atol=1e-4)
    assert recs["a.png"].labels.tolist() == [0, 1] and recs["a.png"].image_id == "a"
    np.testing.assert_allclose(recs["c.png"].boxes, [[0, 0, 10, 10]], atol=1e-5)
    assert recs["b.png"].boxes.shape == (0, 4)
    assert dict(found.report.counts) == {
        "box_clipped": 1, "box_outside": 1, "box_empty": 1, "unknown_class": 1,
        "malformed": 3, "orphan_label": 1, "bad_image": 1,
    }
    err = capsys.readouterr().err
    for line in (2, 4, 5, 6, 7, 8, 9):
        assert f"a.txt:{line}:" in err
    assert "orphan.txt" in err and "d.png: cannot read image" in err


def test_val_split_names_list_and_nested_dirs(tmp_path):
    data = _yolo_dataset(tmp_path, YOLO_LINES[:1], names="[cat, dog]")
    found = read_yolo(data, "val")
    assert found.classes == ["cat", "dog"] and found.report.total == 0
    (rec,) = found.records
    assert (rec.height, rec.width) == (40, 30)
    np.testing.assert_allclose(rec.boxes, [[7.5, 10, 22.5, 30]])


@pytest.mark.parametrize("line_no", [2, 4, 5, 6, 7, 8, 9])
def test_error_policy_names_file_and_line(tmp_path, line_no):
    data = _yolo_dataset(tmp_path, ["0 0.5 0.5 0.2 0.4", YOLO_LINES[line_no - 1]])
    with pytest.raises(DataError) as e:
        read_yolo(data, "train", policy="error")
    assert "a.txt:2:" in str(e.value)


def test_error_policy_orphan_label(tmp_path):
    data = _yolo_dataset(tmp_path, YOLO_LINES[:1], orphan=True)
    with pytest.raises(DataError, match="orphan.txt"):
        read_yolo(data, "train", policy="error")


def test_bad_yaml_and_missing_split(tmp_path):
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


def test_split_folder_escaping_the_dataset_root_is_refused(tmp_path):
    data = _yolo_dataset(tmp_path, YOLO_LINES[:1])
    _png(tmp_path / "outside" / "images" / "x.png")
    data.write_text("path: ds\ntrain: [images/train, ../outside/images]\nnames: [cat, dog]\n")
    found = read_yolo(data, "train")
    assert sorted(_by_name(found.records)) == ["a.png", "b.png", "c.png"]
    assert found.report.messages == [
        f"{data}: 'train' folder '../outside/images' escapes the dataset root {tmp_path / 'ds'} (skipped)"]
    with pytest.raises(DataError, match=r"'train' folder '../outside/images' escapes the dataset root"):
        read_yolo(data, "train", policy="error")
    # An absolute folder too (issue 17: everything read stays in the declared root)...
    outside = tmp_path / "outside" / "images"
    data.write_text(f"path: ds\ntrain: {outside}\nnames: [cat, dog]\n")
    with pytest.raises(DataError, match=f"'train' folder '{outside}' escapes the dataset root {tmp_path / 'ds'}"):
        read_yolo(data, "train", policy="error")
    # ...unless it lies inside it: `path` declares the root, absolute or not.
    data.write_text(f"path: {tmp_path / 'outside'}\ntrain: {outside}\nnames: [cat, dog]\n")
    assert [r.image.name for r in read_yolo(data, "train", policy="error").records] == ["x.png"]


def test_uses_exif_upright_size(tmp_path):
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
    (rec,) = read_yolo(data, "train").records
    assert (rec.height, rec.width) == (20, 10)
    np.testing.assert_allclose(rec.boxes, [[4, 4, 6, 6]], atol=1e-5)
