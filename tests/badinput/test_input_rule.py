"""The one input rule: what a run reads stays inside its root, is a regular file, and folder walks end.

regular_files.py is the one place that opens files (images, masks, annotation
and id lists) and walks folders (SOURCE folders, ImageFolder, YOLO, masks).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from visiontk.errors import DataError

from .support import assert_error, invoke, pattern_image, warnings_of


def _image(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pattern_image(seed=seed).save(path)
    return path


def _predicted(out) -> list[str]:
    return [json.loads(line)["path"] for line in out.stdout.splitlines()]


# ------------------------------------------------------------------ folder walks

def test_predict_over_a_folder_with_symlink_loops_reads_each_image_once(tiny_ckpt, tmp_path):
    folder = tmp_path / "photos"
    a, b = _image(folder / "a.png"), _image(folder / "sub" / "b.png", 1)
    _image(tmp_path / "outside.png", 2)
    (folder / "sub" / "loop").symlink_to("..")      # back to photos/: a loop
    (folder / "sub" / "self").symlink_to(".")       # itself
    (folder / "up").symlink_to(tmp_path)            # the folder holding photos/: out of the root and round again
    out = invoke("classify", "predict", tiny_ckpt, folder)
    assert out.returncode == 0, out.stderr
    assert _predicted(out) == [str(a), str(b)]


def test_symlinked_folder_inside_a_source_is_followed_once(tiny_ckpt, tmp_path):
    """A link to storage elsewhere is part of the folder; a link to a folder already walked is not walked twice."""
    shared = tmp_path / "shared"
    s = _image(shared / "s.png")
    folder = tmp_path / "photos"
    a = _image(folder / "a.png", 1)
    (folder / "linked").symlink_to(shared)
    (folder / "zz-again").symlink_to(shared)
    out = invoke("classify", "predict", tiny_ckpt, folder)
    assert out.returncode == 0, out.stderr
    assert _predicted(out) == [str(a), str(folder / "linked" / s.name)]


# ------------------------------------------------------------------ regular files only

def test_fifo_in_a_source_folder_is_skipped_with_one_warning(tiny_ckpt, tmp_path):
    folder = tmp_path / "photos"
    a = _image(folder / "a.png")
    os.mkfifo(folder / "pipe.png")  # opening it to read would wait for a writer forever
    out = invoke("classify", "predict", tiny_ckpt, folder)
    assert out.returncode == 0, out.stderr
    assert _predicted(out) == [str(a)]
    assert warnings_of(out) == [f"{folder / 'pipe.png'}: a FIFO, not a regular file; skipped"]


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_non_regular_file_named_on_the_command_line_is_an_error_record(tiny_ckpt, tmp_path, kind):
    """Named explicitly (or in a stdin list) it is not read either: an unreadable input, exit 1."""
    a = _image(tmp_path / "a.png")
    if kind == "fifo":
        special = tmp_path / "pipe.png"
        os.mkfifo(special)
        what = "a FIFO"
    else:
        special, what = Path("/dev/zero"), "a character device"
    out = invoke("classify", "predict", tiny_ckpt, a, special)
    message = f"{special}: {what}, not a regular file; not read"
    assert out.returncode == 1, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["path"] for r in records] == [str(a), str(special)] and records[1]["error"] == message
    assert warnings_of(out) == [message]
    assert out.lines[-1] == "error: 1 of 2 images could not be read"


def test_fifo_in_a_training_class_folder_is_skipped(tmp_path):
    from visiontk.data.imagefolder import scan_imagefolder

    root = tmp_path / "set"
    for split in ("train", "val"):
        for cls in ("a", "b"):
            _image(root / split / cls / "1.png")
    os.mkfifo(root / "train" / "a" / "pipe.png")
    samples, classes = scan_imagefolder(root / "train")
    assert classes == ["a", "b"] and [p.name for p, _ in samples] == ["1.png", "1.png"]


@pytest.mark.parametrize("reader", ["image", "image size", "text", "mask", "yolo labels"])
def test_every_reader_refuses_a_fifo_without_blocking(tmp_path, reader):
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    message = f"{fifo}: a FIFO, not a regular file; not read"
    if reader == "yolo labels":
        from visiontk.data.formats.yolo import read_yolo

        _image(tmp_path / "images" / "train" / "a.png")
        (tmp_path / "labels" / "train").mkdir(parents=True)
        os.mkfifo(tmp_path / "labels" / "train" / "a.txt")
        (tmp_path / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/train\nnames: [box]\n")
        with pytest.raises(DataError) as e:
            read_yolo(tmp_path / "data.yaml", "train", policy="error")
        assert str(e.value) == f"{tmp_path / 'labels' / 'train' / 'a.txt'}: a FIFO, not a regular file; not read"
        return
    with pytest.raises(DataError) as e:
        if reader == "image":
            from visiontk.data.images import open_image
            open_image(fifo)
        elif reader == "image size":
            from visiontk.data.formats.files import image_size
            image_size(fifo)
        elif reader == "text":
            from visiontk.data.formats.files import read_text
            read_text(fifo)
        else:
            from visiontk.data.formats.masks import load_index_mask
            load_index_mask(fifo)
    assert str(e.value) == message


# ------------------------------------------------------------------ names from lists stay in the root

def _voc_set(root: Path, ids: list[str]) -> None:
    box = ("<annotation><filename>{name}.png</filename><size><width>48</width><height>40</height></size>"
           "<object><name>box</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>20</xmax><ymax>20</ymax>"
           "</bndbox></object></annotation>")
    for i in range(4):
        _image(root / "JPEGImages" / f"{i}.png", i)
        (root / "Annotations").mkdir(exist_ok=True)
        (root / "Annotations" / f"{i}.xml").write_text(box.format(name=i))
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for split in ("train", "val"):
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in [*ids, "0", "1"]))


@pytest.mark.parametrize("bad", ["../../../outside/evil", "ABSOLUTE"])
def test_voc_id_list_naming_a_file_outside_the_root_is_refused(tmp_path, bad):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "evil.xml").write_text("<annotation><filename>evil.png</filename></annotation>")
    root = tmp_path / "a" / "b" / "voc"
    bad = str(outside / "evil") if bad == "ABSOLUTE" else bad
    _voc_set(root, [bad])
    out = invoke("detect", "train", "detect/voc", "--set", f"data.root={root}", "--set", "data.bad_annotations=error",
                 "--set", "data.classes=[box]", "--set", "data.image_size=32", "--project", tmp_path / "runs")
    ids = root / "ImageSets" / "Main" / "train.txt"
    assert_error(out, f"{ids}:1: id {bad!r} escapes the annotation directory {root / 'Annotations'}", alone=False)


def test_fifo_matched_by_a_pattern_is_skipped_with_one_warning(tiny_ckpt, tmp_path):
    a = _image(tmp_path / "a.png")
    os.mkfifo(tmp_path / "b.png")
    out = invoke("classify", "predict", tiny_ckpt, str(tmp_path / "*.png"))
    assert out.returncode == 0, out.stderr
    assert _predicted(out) == [str(a)]
    assert warnings_of(out) == [f"{tmp_path / 'b.png'}: a FIFO, not a regular file; skipped"]


def test_voc_annotation_that_is_a_fifo_is_reported_not_waited_on(tmp_path):
    from visiontk.data.formats.voc import read_voc

    _voc_set(tmp_path, [])
    (tmp_path / "Annotations" / "0.xml").unlink()
    os.mkfifo(tmp_path / "Annotations" / "0.xml")
    with pytest.raises(DataError) as e:
        read_voc(tmp_path / "Annotations", tmp_path / "JPEGImages", ["box"], policy="error")
    assert str(e.value) == f"{tmp_path / 'Annotations' / '0.xml'}: a FIFO, not a regular file; not read"
