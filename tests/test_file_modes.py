"""Files written through a temp file get the permissions of a new file, not mkstemp's 0600.

Found on real data: checkpoints (`best.pt`, `last.pt`), `results.json` of
`detect predict --out` and the other atomically written outputs were 0600
(mkstemp's mode, kept by the rename): another user of a shared run folder
could not read them, where a plain `open()` would have made them 0644.
"""
from __future__ import annotations

import os
import stat
from contextlib import contextmanager

import numpy as np
import pytest
from helpers import run_cli
from PIL import Image
from untrained import save_untrained_checkpoint

from visiontk.engine.checkpoint import atomic_save, atomic_write_text
from visiontk.file_modes import current_umask, new_file_mode
from visiontk.outputs.output_file import OutputFile

CLASSES = ["circle", "square", "triangle"]


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@contextmanager
def _umask(value: int):
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_checkpoint_and_staged_file_get_the_new_file_mode(tmp_path, umask, expected):
    with _umask(umask):
        assert current_umask() == umask  # read without changing it
        atomic_save({"w": 1}, tmp_path / "best.pt")
        atomic_write_text("{}", tmp_path / "metrics.json")
        OutputFile(tmp_path / "summary.json", overwrite=True).write_text("{}\n")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")  # what open() gives: the reference
        assert current_umask() == umask  # and left as it was
    assert _mode(plain) == expected
    for name in ("best.pt", "metrics.json", "summary.json"):
        assert _mode(tmp_path / name) == expected, name
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_replaced_file_keeps_its_mode(tmp_path):
    target = tmp_path / "last.pt"
    target.write_bytes(b"old")
    target.chmod(0o640)
    with _umask(0o022):
        atomic_save({"w": 2}, target)
    assert _mode(target) == 0o640
    report = tmp_path / "report.json"
    report.write_text("[]")
    report.chmod(0o604)
    with _umask(0o077):
        OutputFile(report, overwrite=True).write_text("{}\n")
    assert _mode(report) == 0o604 and report.read_text() == "{}\n"


def test_new_file_mode_ignores_what_is_not_a_regular_file(tmp_path):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere")
    with _umask(0o022):
        assert new_file_mode(link) == 0o644
        assert new_file_mode(tmp_path) == 0o644  # a folder's mode is not a file's
        assert new_file_mode(None) == 0o644


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    root = tmp_path_factory.mktemp("file-modes")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(images / f"img{k}.png")
    ckpt = save_untrained_checkpoint(root / "detect.pt", "detect/shapes",
                                     ["data.image_size=64", "model.head.S=4", "model.head.width=8",
                                      "model.backbone_options.width=4"], CLASSES)
    return images, ckpt


def test_predict_out_file_is_0644_under_umask_022(detector, tmp_path):
    images, ckpt = detector
    base = ("detect", "predict", str(ckpt), str(images), "--device", "cpu", "--precision", "fp32", "--conf", "0.0")
    # results.json is one JSON document: staged in a temp file and renamed, also when new.
    r = run_cli(*base, "--out", str(tmp_path / "results.json"), umask=0o022)
    assert r.returncode == 0, r.stderr
    r = run_cli(*base, "--out", str(tmp_path / "boxes.jsonl"), umask=0o022)
    assert r.returncode == 0, r.stderr
    assert _mode(tmp_path / "results.json") == 0o644
    assert _mode(tmp_path / "boxes.jsonl") == 0o644
    # An existing file replaced (--overwrite stages it too) keeps its mode.
    (tmp_path / "boxes.jsonl").chmod(0o640)
    r = run_cli(*base, "--out", str(tmp_path / "boxes.jsonl"), "--overwrite", umask=0o022)
    assert r.returncode == 0, r.stderr
    assert _mode(tmp_path / "boxes.jsonl") == 0o640
    assert not list(tmp_path.glob(".*"))
