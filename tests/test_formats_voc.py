"""Pascal VOC -> AnnotatedSet: xml boxes, SegmentationClass masks, id lists (text and CSV) kept inside the root."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visiontk.data.formats.masks import load_index_mask, read_mask_folders
from visiontk.data.formats.voc import read_id_list, read_voc, read_voc_masks
from visiontk.errors import DataError


def _png(path: Path, w: int = 20, h: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (120, 30, 200)).save(path)
    return path


def _by_name(records):
    return {Path(r.image).name: r for r in records}


# ----------------------------------------------------------------------- xml


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
    ann.mkdir(parents=True)
    _png(img / "a.png")
    _png(img / "e.png", 8, 6)
    (ann / "a.xml").write_text(_voc_xml("a.png", VOC_A))
    (ann / "b.xml").write_text(_voc_xml("missing.png", []))
    (ann / "c.xml").write_text(_voc_xml("../../etc/passwd", []))
    (ann / "d.xml").write_text(_voc_xml(None, []))
    (ann / "e.xml").write_text(_voc_xml("e.png", [], size=(0, 0)))  # size read from the image
    return ann, img


def test_skip_policy_with_given_class_names(tmp_path, capsys):
    ann, img = _voc_dataset(tmp_path)
    found = read_voc(ann, img, ["cat", "dog"])
    assert found.classes == ["cat", "dog"] and found.category_ids is None
    recs = _by_name(found.records)
    assert set(recs) == {"a.png", "e.png"}
    np.testing.assert_allclose(recs["a.png"].boxes, [[0, 0, 5, 4], [0, 0, 20, 10], [15, 5, 20, 10]])
    assert recs["a.png"].labels.tolist() == [0, 1, 1] and recs["a.png"].image_id == "a"
    assert (recs["e.png"].height, recs["e.png"].width) == (6, 8) and len(recs["e.png"].boxes) == 0
    assert dict(found.report.counts) == {
        "box_clipped": 1, "box_outside": 1, "box_empty": 1, "unknown_class": 1,
        "malformed": 2, "missing_image": 1, "unsafe_path": 1,
    }
    err = capsys.readouterr().err
    assert "a.xml: object[5] (bird)" in err and "c.xml" in err and "d.xml" in err


def test_class_names_inferred_and_id_list(tmp_path):
    ann, img = _voc_dataset(tmp_path)
    ids = tmp_path / "train.txt"
    ids.write_text("a\nnope\na\n")
    found = read_voc(ann, img, None, id_list=ids)
    assert found.classes == ["bird", "cat", "dog"]  # sorted: the same files always give the same order
    assert [r.labels.tolist() for r in found.records] == [[1, 2, 2, 0]]  # 'a' listed twice: read once
    assert found.report.counts["missing_annotation"] == 1 and found.report.counts["unknown_class"] == 0


@pytest.mark.parametrize("index", [2, 3, 4, 5, 6])
def test_error_policy_bad_objects(tmp_path, index):
    ann, img = tmp_path / "ann", tmp_path / "img"
    ann.mkdir()
    _png(img / "a.png")
    (ann / "x1.xml").write_text(_voc_xml("a.png", [VOC_A[0], VOC_A[index]]))
    with pytest.raises(DataError) as e:
        read_voc(ann, img, ["cat", "dog"], policy="error")
    assert "x1.xml: object[1]" in str(e.value)


@pytest.mark.parametrize("filename", ["missing.png", "../../etc/passwd", None])
def test_error_policy_bad_files(tmp_path, filename):
    ann, img = tmp_path / "ann", tmp_path / "img"
    ann.mkdir()
    img.mkdir()
    (ann / "x2.xml").write_text(_voc_xml(filename, []))
    with pytest.raises(DataError, match="x2.xml"):
        read_voc(ann, img, ["cat"], policy="error")


def test_unreadable_xml(tmp_path):
    ann, img = _voc_dataset(tmp_path)
    (ann / "z.xml").write_text("<annotation><filename>a.png</filename>")
    with pytest.raises(DataError, match="z.xml"):
        read_voc(ann, img, None)


# ----------------------------------------------------------------------- id lists


def test_id_lists_text_and_csv(tmp_path):
    text = tmp_path / "train.txt"
    text.write_text("2008_000001 1\n\n2008_000002 -1\n2008_000001 1\n")
    assert read_id_list(text) == [(f"{text}:1", "2008_000001"), (f"{text}:3", "2008_000002")]
    rows = tmp_path / "val.csv"
    rows.write_text("filename,class\nb.jpg,x\n/content/imgs/a.b.jpg,y\nb.jpg,z\n,w\n")
    assert read_id_list(rows) == [(f"{rows}:2", "b"), (f"{rows}:3", "a.b")]  # one row per box: each image once
    (tmp_path / "bad.csv").write_text("name\nb.jpg\n")
    with pytest.raises(DataError, match=r"bad\.csv: a CSV id list needs a 'filename' column \(data\.options\.ids\)"):
        read_id_list(tmp_path / "bad.csv")
    with pytest.raises(DataError, match=r"absent\.txt: image id list not found \(data\.options\.ids\)"):
        read_id_list(tmp_path / "absent.txt")


def _escaping_ids(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    """A VOC root whose id list names a file outside it (which would not even parse)."""
    root = tmp_path / "VOC"
    ann, img = _voc_dataset(root)
    (ann / "a.xml").write_text(_voc_xml("a.png", VOC_A[:2]))
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "evil.xml").write_text("<not xml")
    ids = root / "ImageSets" / name
    ids.parent.mkdir(parents=True)
    ids.write_text("a\n../../outside/evil\n" if name.endswith(".txt") else "filename\na.png\n../../outside/evil.png\n")
    return ann, img, ids


def test_id_escaping_the_root_is_refused_under_both_policies(tmp_path):
    ann, img, ids = _escaping_ids(tmp_path, "train.txt")
    found = read_voc(ann, img, None, policy="skip", id_list=ids)
    assert [r.image.name for r in found.records] == ["a.png"]
    assert found.report.messages == [f"{ids}:2: id '../../outside/evil' escapes the annotation directory {ann} (skipped)"]
    with pytest.raises(DataError) as e:
        read_voc(ann, img, None, policy="error", id_list=ids)
    assert str(e.value) == f"{ids}:2: id '../../outside/evil' escapes the annotation directory {ann}"


def test_csv_file_names_give_their_stem_only(tmp_path):
    """CSV exports write bare names, folders or absolute paths: only the stem names the xml, inside the folder."""
    ann, img, ids = _escaping_ids(tmp_path, "train.csv")
    found = read_voc(ann, img, None, policy="skip", id_list=ids)
    assert [r.image.name for r in found.records] == ["a.png"]
    assert found.report.messages == [f"{ann / 'evil.xml'}: no annotation file for id 'evil' (skipped)"]


def test_detect_training_never_reads_a_listed_xml_outside_the_root(tmp_path, capsys):
    from visiontk.tasks.recipes import recipe_from_dict
    from visiontk.tasks.registry import get_task

    ann, _, ids = _escaping_ids(tmp_path, "train.txt")
    data = {"format": "voc", "root": str(ann.parent), "image_size": 32, "classes": ["bird", "cat", "dog"],
            "options": {"images": "JPEGImages", "ids": "ImageSets/{split}.txt"}}
    recipe = recipe_from_dict({"task": "detect", "name": "t", "model": {"backbone": "tinycnn", "head": {"S": 4}},
                               "data": data})
    dataset, _ = get_task("detect").build_dataset(recipe, "train", train=False)
    assert [r.image.name for r in dataset.records] == ["a.png"]
    assert "escapes the annotation directory" in capsys.readouterr().err
    recipe.data.bad_annotations = "error"
    with pytest.raises(DataError, match=r"train\.txt:2: id '../../outside/evil' escapes the annotation directory"):
        get_task("detect").build_dataset(recipe, "train", train=False)


# ----------------------------------------------------------------------- SegmentationClass


VOC_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (3 * 252) + [224, 224, 192]


def _write_voc_masks(voc: Path) -> np.ndarray:
    mask = np.full((6, 8), 255, dtype=np.uint8)
    mask[1:-1, 1:-1] = 0
    mask[2:4, 2:5] = 1
    mask[3:5, 5:7] = 20
    for image_id, m in (("2007_000001", mask), ("2007_000002", np.zeros((6, 8), np.uint8))):
        (voc / "JPEGImages").mkdir(parents=True, exist_ok=True)
        (voc / "SegmentationClass").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 6)).save(voc / "JPEGImages" / f"{image_id}.jpg")
        im = Image.fromarray(m, mode="L").convert("P")  # same indices, now a palette image
        im.putpalette(VOC_PALETTE)
        im.save(voc / "SegmentationClass" / f"{image_id}.png")
    (voc / "ImageSets/Segmentation").mkdir(parents=True)
    (voc / "ImageSets/Segmentation/train.txt").write_text("2007_000001\n")
    return mask


def test_palette_masks_are_read_as_indices(tmp_path):
    """Index 1 is dark red: read as luminance it would be 38."""
    voc = tmp_path / "VOC"
    mask = _write_voc_masks(voc)
    assert Image.open(voc / "SegmentationClass/2007_000001.png").mode == "P"
    found = read_voc_masks(voc / "SegmentationClass", voc / "JPEGImages", id_list=voc / "ImageSets/Segmentation/train.txt")
    (rec,) = found.records
    assert rec.image.name == "2007_000001.jpg" and (rec.height, rec.width) == (6, 8) and rec.image_id == "2007_000001"
    assert found.classes is None and np.array_equal(load_index_mask(rec.mask), mask)
    assert len(read_voc_masks(voc / "SegmentationClass", voc / "JPEGImages").records) == 2  # no list: every mask
    # the generic folder reader reads palette masks the same way
    folders = read_mask_folders(voc / "JPEGImages", voc / "SegmentationClass")
    assert np.array_equal(load_index_mask(folders.records[0].mask), mask)


def test_segmentation_id_escaping_the_root_is_refused_under_both_policies(tmp_path):
    voc = tmp_path / "VOC"
    _write_voc_masks(voc)
    ids = voc / "ImageSets/Segmentation/train.txt"
    ids.write_text("2007_000001\n../../../outside/evil\n")
    masks, images = voc / "SegmentationClass", voc / "JPEGImages"
    found = read_voc_masks(masks, images, "skip", ids)
    assert [r.image.name for r in found.records] == ["2007_000001.jpg"]
    assert found.report.messages == [f"{ids}:2: id '../../../outside/evil' escapes the mask directory {masks} (skipped)"]
    with pytest.raises(DataError, match=r"train\.txt:2: id '../../../outside/evil' escapes the mask directory"):
        read_voc_masks(masks, images, "error", ids)


def test_segmentation_missing_image_and_mask(tmp_path):
    voc = tmp_path / "VOC"
    _write_voc_masks(voc)
    ids = voc / "ImageSets/Segmentation/train.txt"
    ids.write_text("2007_000001\nno_image\n2007_000002\n")
    (voc / "SegmentationClass/2007_000002.png").unlink()
    found = read_voc_masks(voc / "SegmentationClass", voc / "JPEGImages", "skip", ids)
    assert [r.image_id for r in found.records] == ["2007_000001"]
    assert dict(found.report.counts) == {"missing_mask": 1, "missing_image": 1}
