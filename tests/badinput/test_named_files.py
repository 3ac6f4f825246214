"""A file the user names where a file is expected -- a mask, classes.txt, a YOLO data yaml,
an image-id list, a recipe -- that is a FIFO, a device or a folder: named as what it is
(visiontk/regular_files.py, the one check), never "not found", never opened (a FIFO
opened for reading would wait for a writer forever), exit 2.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from .support import TINY, assert_error, invoke
from .test_annotations import mask_set, segment_train
from .test_input_rule import _voc_set


def _special(path: Path, kind: str) -> tuple[Path, str]:
    """`path` made a FIFO or a folder (or /dev/null for a device): (the path, what the message calls it)."""
    if path.exists():
        path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
        return path, "a FIFO"
    if kind == "directory":
        path.mkdir()
        return path, "a directory"
    return Path("/dev/null"), "a character device"


def _not_read(path: Path, what: str) -> str:
    return f"{path}: {what}, not a regular file; not read"


def test_segmentation_mask_that_is_a_fifo(tmp_path):
    mask_set(tmp_path / "d", {})
    mask, what = _special(tmp_path / "d" / "train" / "masks" / "2.png", "fifo")
    out = segment_train(tmp_path / "d", tmp_path / "runs", "--set", "data.bad_annotations=error")
    assert_error(out, _not_read(mask, what))


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_classes_txt_that_is_not_a_file(tmp_path, kind):
    mask_set(tmp_path / "d", {})
    listed, what = _special(tmp_path / "d" / "classes.txt", kind)
    out = segment_train(tmp_path / "d", tmp_path / "runs", "--set", "data.classes=null")
    assert_error(out, _not_read(listed, what))


def _yolo_set(root: Path) -> None:
    from visiontk.data.synth import synth_detect

    synth_detect(root, n=4, size=32, seed=0)


@pytest.mark.parametrize("where", ["under data.root", "as data.root"])
def test_yolo_data_yaml_that_is_a_fifo(tmp_path, where):
    _yolo_set(tmp_path / "d")
    if where == "as data.root":
        data_yaml, what = _special(tmp_path / "fifo.yaml", "fifo")
        root = data_yaml
    else:
        data_yaml, what = _special(tmp_path / "d" / "data.yaml", "fifo")
        root = tmp_path / "d"
    out = invoke("detect", "train", "detect/yolo", *TINY, "--set", f"data.root={root}", "--project", tmp_path / "runs")
    assert_error(out, _not_read(data_yaml, what))


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_voc_image_id_list_that_is_not_a_file(tmp_path, kind):
    root = tmp_path / "voc"
    _voc_set(root, [])
    ids, what = _special(root / "ImageSets" / "Main" / "train.txt", kind)
    out = invoke("detect", "train", "detect/voc", "--set", f"data.root={root}", "--set", "data.classes=[box]",
                 "--set", "data.image_size=32", "--project", tmp_path / "runs")
    assert_error(out, _not_read(ids, what), alone=False)


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_recipe_that_is_not_a_file(tmp_path, kind):
    recipe, what = _special(tmp_path / "recipe.yaml", kind)
    assert_error(invoke("recipes", "show", recipe), _not_read(recipe, what))
    assert_error(invoke("classify", "train", recipe), _not_read(recipe, what))


def test_folder_named_like_a_shipped_recipe_does_not_hide_it(tmp_path, monkeypatch):
    """`segment train membrane` next to a data folder `membrane/`: the folder is no recipe, the shipped one is meant."""
    (tmp_path / "membrane").mkdir()
    monkeypatch.chdir(tmp_path)
    out = invoke("recipes", "show", "membrane")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("task: segment\nname: membrane\n")
