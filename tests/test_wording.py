"""Counts in messages are singular for 1 ("1 image", not "1 images"), and say what the inputs are.

Found on real data: `data check` printed "raccoon 1 images, 1 instances" for a class met once,
predict "predicted 1 images", and a signal model's predict "1 of 4 images could not be read".
"""
from __future__ import annotations

import numpy as np
import pytest
from helpers import run_cli
from PIL import Image
from untrained import save_untrained_checkpoint

from visiontk.console import plural
from visiontk.data.formats.issues import ReadReport
from visiontk.data.modality import input_noun
from visiontk.engine.fit_to_data import fit_batch_size, step_schedule_note
from visiontk.tasks.data_check.check import _class_text
from visiontk.tasks.detect.grid_capacity import GridCapacity


@pytest.mark.parametrize("count, noun, expected", [
    (1, "image", "1 image"), (0, "image", "0 images"), (2, "image", "2 images"), (1, "class", "1 class"),
    (3, "class", "3 classes"), (1, "box", "1 box"), (5, "box", "5 boxes"), (2, "entry", "2 entries"),
    (2, "day", "2 days"), (2, "epoch", "2 epochs"), (1, "epoch", "1 epoch"), (3, "batch", "3 batches"), (1, "listed image", "1 listed image"), (4, "listed image", "4 listed images"),
    (2, "more class", "2 more classes"), (3, "weights file", "3 weights files"),
])
def test_plural(count, noun, expected):
    assert plural(count, noun) == expected


def test_plural_takes_an_irregular_plural():
    assert (plural(1, "index", "indices"), plural(2, "index", "indices")) == ("1 index", "2 indices")


def test_counts_of_one_are_singular_in_the_messages():
    assert _class_text({"name": "raccoon", "images": 1, "instances": 1}) == "raccoon 1 image, 1 instance"
    assert _class_text({"name": "raccoon", "images": 2, "instances": 3}) == "raccoon 2 images, 3 instances"
    report = ReadReport("ann.json")
    report.add("box_empty", "x")
    assert report.summary() == "ann.json: 1 problem (1 box_empty)"
    assert fit_batch_size("train.batch_size", 4, 1)[1] == \
        "train.batch_size 4 is larger than the training set (1 image); using batches of 1"

    class Cfg:
        schedule, step_size = "step", 3

    assert step_schedule_note(Cfg, 1).startswith("note: train.step_size 3 is more than the 1 epoch:")
    text = GridCapacity(S=7, B=1, objects=1, lost=1, beyond_b=1).text()
    assert "1 of 1 object shares a 7x7 grid cell" in text and "1 is beyond the B=1 box of their cell" in text
    text = GridCapacity(S=7, B=2, objects=5, lost=2, beyond_b=0).text()
    assert "2 of 5 objects share a 7x7 grid cell" in text and "0 are beyond the B=2 boxes" in text


def test_the_modality_names_its_inputs():
    assert [input_noun(k) for k in ("image", "signal", "text")] == ["image", "signal", "text"]


def test_predict_of_one_image_says_1_image(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(images / "a.png")
    ckpt = save_untrained_checkpoint(tmp_path / "c.pt", "classify/shapes",
                                     ["data.image_size=32", "model.backbone_options.width=4"], ["a", "b"])
    r = run_cli("classify", "predict", str(ckpt), str(images), "--device", "cpu", "--precision", "fp32")
    assert r.returncode == 0, r.stderr
    assert "predicted 1 image;" in r.stderr
    (images / "bad.png").write_bytes(b"not an image")
    r = run_cli("classify", "predict", str(ckpt), str(images), "--device", "cpu", "--precision", "fp32")
    assert r.returncode == 1
    assert "1 of 2 images could not be read" in r.stderr
