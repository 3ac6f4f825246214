"""Outputs never overwrite inputs, and --out never replaces a file unless --overwrite."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from .support import assert_error, invoke, pattern_image


@pytest.fixture
def images(tmp_path) -> list[Path]:
    paths = []
    for i in range(3):
        paths.append(tmp_path / "in" / f"im{i}.png")
        paths[-1].parent.mkdir(exist_ok=True)
        pattern_image(seed=i).save(paths[-1])
    return paths


def test_out_refuses_an_existing_file(tiny_ckpt, images, tmp_path):
    out_file = tmp_path / "preds.jsonl"
    out_file.write_text("earlier results\n")
    out = invoke("classify", "predict", tiny_ckpt, *images, "--out", out_file)
    assert_error(out, f"{out_file}: output file exists (use --overwrite to replace it)")
    assert out_file.read_text() == "earlier results\n"


def test_out_with_overwrite_replaces_it(tiny_ckpt, images, tmp_path):
    out_file = tmp_path / "preds.jsonl"
    out_file.write_text("earlier results\n")
    out = invoke("classify", "predict", tiny_ckpt, *images, "--out", out_file, "--overwrite")
    assert out.returncode == 0, out.stderr
    assert [json.loads(line)["path"] for line in out_file.read_text().splitlines()] == [str(p) for p in images]
    assert list(tmp_path.glob(".preds.jsonl.*")) == []  # no temp file left


@pytest.mark.parametrize("how", ["argument", "folder", "stdin", "other spelling"])
def test_out_pointing_at_an_input_image_is_refused_even_with_overwrite(tiny_ckpt, images, tmp_path, how):
    target = images[1]
    before = target.read_bytes()
    if how == "argument":
        out = invoke("classify", "predict", tiny_ckpt, *images, "--out", target, "--overwrite")
    elif how == "folder":
        out = invoke("classify", "predict", tiny_ckpt, target.parent, "--out", target, "--overwrite")
    elif how == "stdin":
        out = invoke("classify", "predict", tiny_ckpt, "-", "--out", target, "--overwrite",
                     stdin="".join(f"{p}\n" for p in images))
    else:  # the same file through another path
        out = invoke("classify", "predict", tiny_ckpt, *images, "--overwrite",
                     "--out", target.parent / ".." / target.parent.name / target.name)
    assert_error(out, f"{target}: is both an input image and the --out file; refusing to overwrite an input",
                 alone=False)
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir() if p.name.startswith(".")] == []


def test_out_that_is_a_directory(tiny_ckpt, images, tmp_path):
    assert_error(invoke("classify", "predict", tiny_ckpt, *images, "--out", tmp_path),
                 f"{tmp_path}: output path is a directory")


def test_failed_run_leaves_the_old_results_intact(tiny_ckpt, images, tmp_path):
    """With --overwrite the new results replace the old file only when the run ends."""
    out_file = tmp_path / "preds.jsonl"
    out_file.write_text("earlier results\n")
    out = invoke("classify", "predict", tiny_ckpt, images[0], tmp_path / "missing-folder", "--out", out_file,
                 "--overwrite")
    assert_error(out, f"{tmp_path / 'missing-folder'}: no such file, folder or pattern", alone=False)
    assert out_file.read_text() == "earlier results\n"
