from pathlib import Path

import pytest
import yaml

from helpers import run_cli
from visiontk.errors import UserError
from visiontk.recipe import apply_overrides, list_recipes, parse_override
from visiontk.tasks.recipes import load_recipe


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


BASE = "task: classify\nname: t\ndata: {root: somewhere}\n"


def test_every_shipped_recipe_validates():
    paths = list_recipes()
    assert any(p.parent.name == "classify" for p in paths)
    for p in paths:
        r = load_recipe(p)
        assert r.task == p.parent.name or p.parent.name == "transfer"


def test_defaults_and_task_sections_filled(tmp_path):
    r = load_recipe(write(tmp_path, BASE))
    assert r.train.optimizer == "sgd" and (r.model.head.pool, r.model.head.dropout, r.model.head.hidden) == ("avg", 0.0, 0)
    assert r.image_size == (64, 64)


def test_unknown_key_is_named_with_suggestion(tmp_path):
    with pytest.raises(UserError, match=r"unknown key 'train.lrr' \(did you mean 'train.lr'\?\)"):
        load_recipe(write(tmp_path, BASE + "train: {lrr: 0.1}\n"))


def test_unknown_key_in_task_section(tmp_path):
    with pytest.raises(UserError, match=r"unknown key 'model.head.pooling' \(did you mean 'model.head.pool'\?\)"):
        load_recipe(write(tmp_path, BASE + "model: {head: {pooling: max}}\n"))


@pytest.mark.parametrize("snippet, message", [
    ("train: {epochs: ten}", r"'train.epochs' must be an integer, got 'ten'"),
    ("train: {lr: -0.1}", r"'train.lr' must be > 0"),
    ("train: {optimizer: rmsprop}", r"'train.optimizer' must be one of 'sgd' \| 'adamw' \| 'adam'"),
    ("data: {root: x, image_size: [64]}", r"'data.image_size'"),
    ("train: {batch_size: 0}", r"'train.batch_size' must be >= 1"),
    ("model: {head: {pool: median}}", r"'model.head.pool' must be one of"),
])
def test_wrong_values_name_the_path(tmp_path, snippet, message):
    with pytest.raises(UserError, match=message):
        load_recipe(write(tmp_path, BASE + snippet + "\n"))


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    p = write(tmp_path, BASE + "train: {epochs: 3\nmodel: [\n")
    with pytest.raises(UserError, match=rf"{p}:\d+:\d+: YAML syntax error"):
        load_recipe(p)


def test_unknown_task(tmp_path):
    with pytest.raises(UserError, match="unknown task 'clasify'"):
        load_recipe(write(tmp_path, "task: clasify\n"))


def test_overrides_parse_values_as_yaml(tmp_path):
    assert parse_override("train.lr=0.001") == ("train.lr", 1e-3)
    assert parse_override("data.image_size=[32, 48]") == ("data.image_size", [32, 48])
    assert parse_override("train.amp=off") == ("train.amp", False)
    r = load_recipe(write(tmp_path, BASE), ["train.lr=5e-1", "train.epochs=3", "model.head.pool=max", "data.classes=[a, b]"])
    assert (r.train.lr, r.train.epochs, r.model.head.pool, r.data.classes) == (0.5, 3, "max", ["a", "b"])
    assert apply_overrides({"a": {"b": 1}}, ["a.c=2"]) == {"a": {"b": 1, "c": 2}}


@pytest.mark.parametrize("bad", ["train.lr", "=3", "train..lr=3"])
def test_bad_override_syntax(bad):
    with pytest.raises(UserError, match="--set"):
        parse_override(bad)


def test_override_of_unknown_key_is_rejected(tmp_path):
    with pytest.raises(UserError, match="unknown key 'train.epoch'"):
        load_recipe(write(tmp_path, BASE), ["train.epoch=3"])


def test_recipes_show_prints_resolved_yaml_and_errors_exit_2(tmp_path):
    res = run_cli("recipes", "show", "classify/shapes", "--set", "train.epochs=3")
    assert res.returncode == 0, res.stderr
    shown = yaml.safe_load(res.stdout)
    assert shown["train"]["epochs"] == 3 and shown["model"]["head"]["pool"] == "max"
    res = run_cli("recipes", "show", str(write(tmp_path, BASE + "train: {lrr: 1}\n")))
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "did you mean 'train.lr'" in res.stderr
    assert "Traceback" not in res.stderr
