"""Bad recipes and overrides: one line naming the file (or --set) and the key, exit 2, before any work."""
from __future__ import annotations

from pathlib import Path

import pytest

from .support import assert_error, invoke

GOOD = "task: classify\ndata:\n  root: data\n"


def recipe(tmp_path: Path, text: str | bytes, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def show(path, *overrides: str):
    """`recipes show` loads and validates exactly as `train` does, without training."""
    return invoke("recipes", "show", path, *[a for o in overrides for a in ("--set", o)])


CASES = {
    # name: (recipe text, overrides, message after "<file>: ")
    "yaml syntax error": ("task: classify\ntrain:\n  lr: [0.1\n  epochs: 3\n", [],
                          "{f}:4:9: YAML syntax error: expected ',' or ']', but got ':'"),
    "tab indentation": ("task: classify\ntrain:\n\tlr: 0.1\n", [],
                        "{f}:3:1: YAML syntax error: found character '\\t' that cannot start any token"),
    "unknown key": (GOOD + "train:\n  lrr: 0.1\n", [], "{f}: unknown key 'train.lrr' (did you mean 'train.lr'?)"),
    "unknown top-level key": (GOOD + "trian: {}\n", [], "{f}: unknown key 'trian' (did you mean 'train'?)"),
    "wrong type": (GOOD + "train:\n  epochs: ten\n", [], "{f}: 'train.epochs' must be an integer, got 'ten'"),
    "wrong type of section": (GOOD + "train: 5\n", [], "{f}: 'train' must be a mapping, got 5"),
    "negative learning rate": (GOOD + "train:\n  lr: -0.1\n", [], "{f}: 'train.lr' must be > 0, got -0.1"),
    "infinite learning rate": (GOOD + "train:\n  lr: .inf\n", [], "{f}: 'train.lr' must be a finite number, got inf"),
    "learning rate 1e999": (GOOD + "train:\n  lr: 1e999\n", [], "{f}: 'train.lr' must be a finite number, got inf"),
    "zero epochs": (GOOD + "train:\n  epochs: 0\n", [], "{f}: 'train.epochs' must be >= 1, got 0"),
    "bad choice": (GOOD + "train:\n  optimizer: adamm\n", [],
                   "{f}: 'train.optimizer' must be one of 'sgd' | 'adamw' | 'adam', got 'adamm'"),
    "unknown task": ("task: clasify\n", [], "{f}: unknown task 'clasify' (known: classify, detect, segment)"),
    "missing task": ("data:\n  root: x\n", [], "{f}: missing required key 'task'"),
    "empty file": ("", [], "{f}: missing required key 'task'"),
    "not a mapping": ("- task: classify\n", [], "{f}: a recipe must be a YAML mapping, got list"),
    "deeply nested": ("task: classify\nx: " + "[" * 3000 + "]" * 3000 + "\n", [], "{f}: YAML nested too deeply"),
    "not UTF-8": (b"task: classify\nname: \xff\xfe\n", [],
                  "{f}: cannot read (UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff in position 21: "
                  "invalid start byte)"),
    "unknown head option": (GOOD + "model:\n  head:\n    pol: max\n", [],
                            "{f}: unknown key 'model.head.pol' (did you mean 'model.head.pool'?)"),
    "negative learning rate by --set": (GOOD, ["train.lr=-1"], "{f}: 'train.lr' must be > 0, got -1"),
    "unknown key by --set": (GOOD, ["train.epoch=3"], "{f}: unknown key 'train.epoch' (did you mean 'train.epochs'?)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_recipe_is_one_line_naming_file_and_key(tmp_path, case):
    text, overrides, message = CASES[case]
    path = recipe(tmp_path, text)
    assert_error(show(path, *overrides), message.format(f=path))


@pytest.mark.parametrize("override, message", [
    ("train.lr", "--set 'train.lr': expected KEY=VALUE, e.g. train.lr=0.01"),
    ("train..lr=1", "--set 'train..lr=1': bad key 'train..lr'"),
    ("train.lr=[0.1", "--set 'train.lr=[0.1': value is not valid YAML (while parsing a flow sequence); "
                      "if [0.1 is meant as text, quote it: --set 'train.lr=\"[0.1\"'"),
    ("task.x=1", "--set 'task.x=1': 'task' is not a mapping"),
], ids=["no '='", "empty key part", "bad YAML value", "into a scalar"])
def test_bad_override_names_the_override(tmp_path, override, message):
    assert_error(show(recipe(tmp_path, GOOD), override), message)


def test_missing_recipe_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    assert_error(show(missing), f"{missing}: no such recipe file or shipped recipe (see 'visiontk recipes list')")


def test_train_stops_at_the_recipe_before_any_work(tmp_path):
    """The same check through `train`: nothing is created (no run folder)."""
    path = recipe(tmp_path, GOOD + "train:\n  lr: -0.1\n")
    out = invoke("classify", "train", path, "--project", tmp_path / "runs")
    assert_error(out, f"{path}: 'train.lr' must be > 0, got -0.1")
    assert not (tmp_path / "runs").exists()


def test_recipe_of_another_task(tmp_path):
    path = recipe(tmp_path, "task: segment\n")
    out = invoke("classify", "train", path, "--project", tmp_path / "runs")
    assert "Traceback" not in out.stderr and out.returncode == 2
    assert len(out.lines) == 1 and out.lines[0].startswith(f"error: {path}")
