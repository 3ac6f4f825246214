"""Failures to write are exit 2 naming the path; names and numbers survive the way out.

- an --out or --project where nothing can be written: exit 2, one line, the path;
- file names that are not UTF-8 (bytes on stdin) are predicted and written
  escaped, never a UnicodeError;
- NaN and infinities are written as JSON null (not the NaN that parsers reject);
- control characters in names are escaped before they reach the terminal;
- `--device meta`, random bytes as a checkpoint, usage errors: one line each.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch

from .support import TINY, assert_error, invoke, pattern_image


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "a.png"
    pattern_image().save(path)
    return path


def _strict_json(line: str):
    def refuse(name):
        raise AssertionError(f"not JSON: {name} in {line}")
    return json.loads(line, parse_constant=refuse)


def test_out_under_proc(tiny_ckpt, image):
    assert_error(invoke("classify", "predict", tiny_ckpt, image, "--out", "/proc/preds.jsonl"),
                 "/proc/preds.jsonl: No such file or directory")


def test_out_in_a_folder_that_is_a_file(tiny_ckpt, image, tmp_path):
    (tmp_path / "x.png").write_bytes(b"not a folder")
    assert_error(invoke("classify", "predict", tiny_ckpt, image, "--out", tmp_path / "x.png" / "p.jsonl"),
                 f"{tmp_path / 'x.png'}: is a file, not a folder")


def test_project_where_nothing_can_be_written(tiny_data):
    assert_error(invoke("classify", "train", "classify/shapes", *TINY, "--set", f"data.root={tiny_data}",
                        "--project", "/proc/runs"), "/proc/runs: No such file or directory")


def test_device_meta(tiny_ckpt, image):
    assert_error(invoke("classify", "predict", tiny_ckpt, image, "--device", "meta"),
                 "--device meta: not a device visiontk runs on (auto, cpu, cuda, cuda:N, mps)")


def test_random_bytes_are_not_a_checkpoint(image, tmp_path):
    path = tmp_path / "random.pt"
    path.write_bytes(bytes(range(256)) * 8 + os.urandom(2000))
    assert_error(invoke("classify", "predict", path, image),
                 f"{path}: cannot load checkpoint: file is truncated or not a PyTorch checkpoint")


@pytest.mark.parametrize("args", [["classify", "predict"], ["classify", "predikt"],
                                  ["classify", "predict", "x.pt", "y.png", "--batch-size", "abc"]])
def test_usage_errors_are_one_line(args):
    assert_error(invoke(*args), re.compile(r"error: .+"))


def test_names_that_are_not_utf8_from_stdin_to_jsonl_and_csv(tiny_ckpt, tmp_path):
    name = b"caf\xe9.png"  # Latin-1, as an old archive names it
    path = os.fsencode(tmp_path) + b"/" + name
    with open(path, "wb") as f:
        pattern_image().save(f, "PNG")
    listing = path + b"\n" + os.fsencode(tmp_path) + b"/gone\xff.png\n"
    out = invoke("classify", "predict", tiny_ckpt, "-", stdin=listing)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr  # the missing one is an error record
    records = [_strict_json(line) for line in out.stdout.splitlines()]
    # The escape JSON reads back as the file's own bytes.
    assert [os.fsencode(r["path"]) for r in records] == [path, os.fsencode(tmp_path) + b"/gone\xff.png"]
    assert "label" in records[0] and "error" in records[1]
    assert "gone\\xff.png: no such file" in out.stderr
    csv_out = tmp_path / "preds.csv"
    out = invoke("classify", "predict", tiny_ckpt, "-", "--out", csv_out, "--format", "csv", stdin=path + b"\n")
    assert out.returncode == 0, out.stderr
    assert "caf\\udce9.png" in csv_out.read_text(encoding="utf-8")


def test_nan_weights_write_null_not_nan(tiny_ckpt, image, tmp_path):
    ckpt = torch.load(tiny_ckpt, weights_only=True)
    ckpt["model"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    broken = tmp_path / "nan.pt"
    torch.save(ckpt, broken)
    out = invoke("classify", "predict", broken, image)
    assert out.returncode == 0, out.stderr
    record = _strict_json(out.stdout.splitlines()[0])
    assert record["prob"] is None and all(t["prob"] is None for t in record["topk"])


def test_control_characters_in_names_are_escaped_on_the_terminal(tiny_ckpt, image, tmp_path):
    evil = tmp_path / "\x1b[2J\x1b[31mred\x07\nline.png"
    evil.write_bytes(b"not an image")
    out = invoke("classify", "predict", tiny_ckpt, image, evil)
    assert out.returncode == 1, out.stderr
    assert "\x1b" not in out.stderr and "\x07" not in out.stderr
    assert out.lines[0] == f"warning: {tmp_path}/\\x1b[2J\\x1b[31mred\\x07\\nline.png: not an image file PIL can decode"


def test_emoji_codes_in_names_are_printed_as_they_are(tmp_path):
    # rich replaces ':smile:' with a smiley by default: a class folder or a file named so
    # would be misreported in every message and table.
    from rich.table import Table

    from visiontk.console import err_console, info

    table = Table("class")
    table.add_row(":thumbs_up:")
    with err_console.capture() as captured:
        info(f"{tmp_path}/:smile:.jpg: read")
        err_console.print(table)
    text = captured.get()
    assert f"{tmp_path}/:smile:.jpg: read" in text and ":thumbs_up:" in text
