"""Issue 17, tried again: fresh variants of each kind that failed before their fix.

Each test names its kind (input rule, output rule, checkpoint, limits, signals,
exit codes and text) and the exact outcome. Most run in this process against
the session's tiny classifier: the fixes refuse before any image is read.
"""
from __future__ import annotations

import errno
import os
import re
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from .support import TINY, assert_error, invoke, pattern_image, warnings_of


def _png_l(path: Path, width: int, height: int) -> Path:
    """An all-zero 8-bit greyscale PNG of any size, made in microseconds: its pixel data
    is height x (1 + width) zero bytes, so one deflate block of 1 MB of zeros (ended by
    a full flush, which makes it independent) is repeated, and the zlib checksum of n
    zeros is ((n mod 65521) << 16) | 1."""
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    total, block = height * (1 + width), 1 << 20
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    repeated = c.compress(bytes(block)) + c.flush(zlib.Z_FULL_FLUSH)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    tail = c.compress(bytes(total % block)) + c.flush()
    idat = b"\x78\xda" + repeated * (total // block) + tail + struct.pack(">I", ((total % 65521) << 16) | 1)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


# ------------------------------------------------------------------ input rule

def _yolo_set(root: Path, listing: list[str], path_key: str = ".") -> Path:
    (root / "images").mkdir(parents=True)
    for name in ("a.png", "b.png"):
        pattern_image(16, 16).save(root / "images" / name)
    (root / "train.txt").write_text("".join(line + "\n" for line in listing))
    data = root / "data.yaml"
    data.write_text(f"path: {path_key}\ntrain: train.txt\nnames: [box]\n")
    return data


def test_yolo_list_line_absolute_outside_the_root_is_skipped(tmp_path):
    """Before: an absolute list line was read wherever it pointed (the 'author's choice')."""
    from visiontk.data.formats.yolo import read_yolo

    outside = tmp_path / "outside" / "images" / "evil.png"
    outside.parent.mkdir(parents=True)
    pattern_image(16, 16).save(outside)
    root = tmp_path / "ds"
    inside_abs = root / "images" / "b.png"
    data = _yolo_set(root, ["./images/a.png", str(inside_abs), str(outside)])
    found = read_yolo(data, "train", within=root)
    assert sorted(r.image.name for r in found.records) == ["a.png", "b.png"]  # absolute inside: kept
    assert found.report.messages == [f"{root / 'train.txt'}:3: image '{outside}' escapes the dataset root {root} (skipped)"]


def test_yolo_path_key_escaping_data_root_is_refused(tmp_path):
    from visiontk.data.formats.yolo import read_yolo
    from visiontk.errors import DataError

    root = tmp_path / "ds"
    data = _yolo_set(root, ["./images/a.png"], path_key="../outside")
    with pytest.raises(DataError) as e:
        read_yolo(data, "train", within=root)
    assert str(e.value) == f"{data}: 'path' '../outside' escapes the data root {root} (data.root)"


def test_checkpoint_that_is_a_fifo_is_named_as_one(tmp_path):
    """Before: 'fifo.pt: checkpoint does not exist' (exit 2, but a false reason)."""
    fifo = tmp_path / "fifo.pt"
    os.mkfifo(fifo)
    image = tmp_path / "x.png"
    pattern_image().save(image)
    assert_error(invoke("classify", "predict", fifo, image), f"{fifo}: checkpoint is a FIFO, not a regular file")


# ------------------------------------------------------------------ output rule

def test_eval_plots_dir_inside_the_data_set_is_refused_before_reading(tiny_ckpt, tiny_data):
    """Before: confusion_matrix_val.png was written into val/circle, a circle image for the next run."""
    target = tiny_data / "val" / "circle"
    out = invoke("classify", "eval", tiny_ckpt, "--plots-dir", target)
    assert_error(out, f"{target}: --plots-dir is inside the data folder {tiny_data / 'val'}; its files would be read "
                      f"as data (choose a folder outside it)")
    assert not (target / "confusion_matrix_val.png").exists()


def test_eval_plots_dir_that_is_a_file_is_refused_before_reading(tiny_ckpt):
    out = invoke("classify", "eval", tiny_ckpt, "--plots-dir", tiny_ckpt)
    assert_error(out, f"{tiny_ckpt}: is a file, not a folder (--plots-dir)")


def test_run_directory_inside_the_data_root_is_refused(tiny_data):
    """Before: --project DATA/train made a run dir that the next run read as a class 'classify'."""
    out = invoke("classify", "train", "classify/shapes", *TINY, "--set", f"data.root={tiny_data}",
                 "--project", tiny_data / "train", "--name", "r")
    run_dir = tiny_data / "train" / "classify" / "r"
    assert_error(out, f"{run_dir}: the run directory (--project, --name) is inside the data folder "
                      f"{tiny_data / 'train'}; its files would be read as data (choose a folder outside it)")
    assert not (tiny_data / "train" / "classify").exists()


def test_stopped_coco_results_leave_no_half_file(tmp_path):
    """Before: SIGTERM during `detect predict --format coco --out p.json` left '[' in p.json."""
    from visiontk.outputs.output_file import OutputFile
    from visiontk.outputs.plan import PredictionOutputs
    from visiontk.stop_signals import Stopped
    from visiontk.tasks.detect.writers import CocoResultsWriter

    out = tmp_path / "p.json"
    outputs = PredictionOutputs(lambda s: CocoResultsWriter(s), stream=OutputFile(out), whole_document=True)

    def run(paths, writer, flush):
        writer({"path": "a.png", "boxes": [[0, 0, 1, 1]], "scores": [0.5], "labels": ["x"], "label_ids": [0]})
        raise Stopped(15)

    with pytest.raises(Stopped):
        outputs.write(run, [], [])
    assert sorted(os.listdir(tmp_path)) == []


def test_stopped_synth_removes_what_it_wrote_and_nothing_else(tmp_path, monkeypatch):
    """Before: a stopped synth left a partial set that a later train used (or refused to replace)."""
    from visiontk.data import synth
    from visiontk.stop_signals import Stopped

    out = tmp_path / "s"
    synth.synth_classify(out, n=6, size=16)
    (out / "train" / "circle" / "mine.png").write_bytes(b"user's")
    (out / "notes").mkdir()
    calls = {"n": 0}
    real = synth.classify_scene

    def stop_after_three(*args):
        calls["n"] += 1
        if calls["n"] > 3:
            raise Stopped(15)
        return real(*args)

    monkeypatch.setattr(synth, "classify_scene", stop_after_three)
    with pytest.raises(Stopped):
        synth.synth_classify(out, n=40, size=16, seed=1)
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    # The user's file and empty folder stay; none of this run's images does. The earlier
    # run's files were removed by design (its synth.json listed them), the folders it made
    # without listing (the empty val/triangle) and its synth.json stay: a next synth may go on.
    assert left == ["notes", "synth.json", "train", "train/circle", "train/circle/mine.png", "val", "val/triangle"]
    monkeypatch.undo()
    assert synth.synth_classify(out, n=6, size=16)["train"] == 4


# ------------------------------------------------------------------ checkpoint as untrusted input

def _tampered(tiny_ckpt, tmp_path, change) -> Path:
    ckpt = torch.load(tiny_ckpt, weights_only=True)
    change(ckpt)
    path = tmp_path / "t.pt"
    torch.save(ckpt, path)
    return path


CONSISTENCY = {
    "category ids for fewer classes": (lambda c: c.__setitem__("category_ids", [1, 2]),
                                       "'category_ids' has 2 ids for 3 classes"),
    "preprocess size beside input_size": (lambda c: c["preprocess"].__setitem__("size", [4096, 4096]),
                                          "'input_size' is [32, 32] but 'preprocess.size' is [4096, 4096]"),
    "channels beside the model's": (lambda c: c["preprocess"].__setitem__("channels", 1),
                                    "'preprocess.channels' is 1 but 'recipe.model.in_channels' is 3"),
    # A checkpoint from before `preprocess` existed: its top-level mean, bounded as the recipe's.
    "older checkpoint's mean of two values": (
        lambda c: c.update(preprocess=None, input_size=[32, 32], in_channels=3, mean=[0.5, 0.5], std=[0.2] * 3),
        "'mean' must have 1 or 3 values, got [0.5, 0.5]"),
    # Before: 9.6 GB allocated for the 4096-wide model, then "size mismatch".
    "backbone width in the stored recipe": (
        lambda c: c["recipe"]["model"]["backbone_options"].__setitem__("width", 4096),
        "weights 'model.backbone.body.stages.0.0.0.weight' have shape [4, 3, 3, 3], but the model its metadata "
        "describes (3 classes, its recipe) needs [4096, 3, 3, 3]"),
}


@pytest.mark.parametrize("case", CONSISTENCY, ids=list(CONSISTENCY))
def test_checkpoint_keys_that_must_agree(tiny_ckpt, tmp_path, case):
    change, message = CONSISTENCY[case]
    path = _tampered(tiny_ckpt, tmp_path, change)
    image = tmp_path / "x.png"
    pattern_image().save(image)
    assert_error(invoke("classify", "predict", path, image), f"{path}: {message}")


# ------------------------------------------------------------------ limits

def test_mask_larger_than_its_image_is_skipped_from_its_header(tmp_path):
    """Before: a 21000 x 21000 mask beside a 32 px image ended in 'unexpected DecompressionBombError'."""
    from visiontk.tasks.segment.readers import SegmentationRecord, check_records

    image, mask = tmp_path / "a.png", _png_l(tmp_path / "a_mask.png", 21000, 21000)
    pattern_image(32, 32).save(image)
    kept = check_records([SegmentationRecord(image=image, mask=mask)], 2, policy="skip")
    assert kept == []


def test_coco_image_entry_far_larger_than_the_image_is_not_rasterised(tmp_path):
    """Before: width/height 100000 in the json made a 10 GB mask (OOM-killed at 18 GB)."""
    from visiontk.errors import DataError
    from visiontk.tasks.segment.readers import CocoMask, SegmentationRecord, check_records

    image = tmp_path / "a.png"
    pattern_image(32, 32).save(image)
    coco = CocoMask(height=100000, width=100000, objects=((1, [[0, 0, 10, 0, 10, 10]]),), source="ann.json")
    with pytest.raises(DataError) as e:
        check_records([SegmentationRecord(image=image, coco=coco)], 2, policy="error")
    assert str(e.value) == "ann.json (masks of a.png): mask size 100000x100000 differs from image a.png size 32x32"


def test_mask_over_the_decoding_budget_is_refused(tmp_path):
    from visiontk.data.formats.masks import load_index_mask
    from visiontk.errors import DataError

    mask = _png_l(tmp_path / "m.png", 25000, 25000)  # 625 MP: before, an 'unexpected DecompressionBombError'
    with pytest.raises(DataError) as e:
        load_index_mask(mask)
    assert str(e.value) == f"{mask}: mask too large (more than 200 MP)"


def test_embed_image_size_is_bounded_like_the_recipe(tiny_ckpt, tmp_path):
    out = invoke("transfer", "embed", tiny_ckpt, tmp_path, "--image-size", "100000")
    assert_error(out, re.compile(r"error: Invalid value for '--image-size': Input should be less than or "
                                 r"equal to 8192 \(see '.* transfer embed --help'\)"))


def test_predict_workers_are_capped_with_a_note(tiny_ckpt, tmp_path):
    from visiontk.engine.resources import usable_cpus

    image = tmp_path / "x.png"
    pattern_image().save(image)
    out = invoke("classify", "predict", tiny_ckpt, image, "--workers", "100000")
    assert out.returncode == 0, out.stderr
    cpus = usable_cpus()
    assert out.lines[0] == f"note: --workers 100000 is more than the {cpus} CPUs this process can use; using {cpus}"


# ------------------------------------------------------------------ exit codes and text

def test_full_disk_while_writing_results_names_the_file(tiny_ckpt, tmp_path):
    """/dev/full: every write fails with ENOSPC. Before: exit 1 'unexpected OSError: [Errno 28]'."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    image = tmp_path / "x.png"
    pattern_image().save(image)
    out = invoke("classify", "predict", tiny_ckpt, image, "--out", "/dev/full")
    assert_error(out, "/dev/full: cannot write (No space left on device)", alone=False)


def test_full_disk_while_saving_a_checkpoint_names_it_and_leaves_no_temp(tmp_path):
    from visiontk.engine.checkpoint import _atomic_write
    from visiontk.errors import UserError

    def full(f):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(UserError) as e:
        _atomic_write(tmp_path / "last.pt", "wb", full)
    assert str(e.value) == f"{tmp_path / 'last.pt'}: cannot write (No space left on device)"
    assert os.listdir(tmp_path) == []


def test_full_disk_in_a_folder_writer_names_the_image_file(tmp_path):
    from visiontk.errors import UserError, writing

    target = tmp_path / "masks" / "a.png"
    with pytest.raises(UserError) as e, writing(target):
        raise OSError(errno.ENOSPC, "No space left on device")  # what PIL's save raises: no file name
    assert str(e.value) == f"{target}: cannot write (No space left on device)"
    # A read error in the block keeps its own message: only write failures are said of the output.
    with pytest.raises(FileNotFoundError), writing(target):
        open(tmp_path / "missing")


def test_class_name_with_escapes_reaches_no_warning_raw(tmp_path, capfd):
    """Before: matplotlib warned 'Glyph 27 (\\x1b) missing' with the raw ESC on stderr."""
    from visiontk.viz.plots import plot_confusion_matrix

    plot_confusion_matrix([[1, 0], [0, 1]], ["\x1b[31mred\x07", "ok"], tmp_path / "cm.png")
    err = capfd.readouterr().err
    assert "\x1b" not in err and "\x07" not in err


def test_results_on_a_terminal_have_control_characters_escaped():
    import io

    from visiontk.outputs.output_file import _TerminalText

    buf = io.StringIO()
    _TerminalText(buf).write('a/\x1b[31mred\x07/x.png,label\r\n')
    assert buf.getvalue() == 'a/\\x1b[31mred\\x07/x.png,label\r\n'
