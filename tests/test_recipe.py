import copy
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import run_cli
from visiontk.errors import UserError
from visiontk.recipe import EmptySection, Section, TaskSections, apply_overrides, dump_recipe, list_recipes, parse_override, parse_recipe
from visiontk.tasks.recipes import load_recipe, recipe_from_dict


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


def test_path_template_override_says_how_to_quote_it():
    """Found on the ISBI membrane set: --set 'data.options.images={split}/image' was refused with
    YAML's "expected '<document start>', but found '<scalar>'" alone. The message now shows the
    quoted form, and that form gives the template."""
    with pytest.raises(UserError) as info:
        parse_override("data.options.images={split}/image")
    quoted = """--set 'data.options.images="{split}/image"'"""
    assert quoted in str(info.value)
    assert parse_override(quoted[len("--set '"):-1]) == ("data.options.images", "{split}/image")


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


STORED = Path(__file__).parent / "data" / "stored_recipes"
# Keys added since those files were stored, with the value a recipe without them
# gets (the preprocessing of data/preprocess.py: the one checkpoints without a
# `preprocess` entry are rebuilt with).
ADDED_SINCE = {"data": {"resize": "bilinear", "jpeg_draft": True}, "train": {"warmup_epochs": None, "compile_backend": "inductor"},
               "model": {"output_stride": None}}


# data.options keys added since, per data.format (mask folders: the class-map yaml).
OPTIONS_ADDED_SINCE = {"masks": {"data_yaml": None}}


def with_added_keys(stored: dict) -> dict:
    out = copy.deepcopy(stored)
    for section, keys in ADDED_SINCE.items():
        for key, value in keys.items():
            out[section].setdefault(key, value)
    for key, value in OPTIONS_ADDED_SINCE.get(out["data"].get("format"), {}).items():
        out["data"]["options"].setdefault(key, value)
    return out


@pytest.mark.parametrize("path", sorted(STORED.glob("*.yaml")), ids=lambda p: p.stem)
def test_recipes_stored_in_earlier_checkpoints_still_validate(path):
    """Checkpoints keep recipe.to_dict(); the files hold it as written before the typed
    recipe (one per shipped recipe): it validates, typed, and comes back key for key,
    with the keys added since at their defaults."""
    stored = yaml.safe_load(path.read_text())
    assert not any(key in stored[section] for section, keys in ADDED_SINCE.items() for key in keys)
    recipe = recipe_from_dict(copy.deepcopy(stored), source=str(path))
    assert isinstance(recipe.model.head, Section) and isinstance(recipe.data.options, Section)
    assert recipe.to_dict() == with_added_keys(stored)
    assert yaml.safe_load(dump_recipe(recipe)) == with_added_keys(stored)
    # Stored with those keys (checkpoints since), other values included: back key for key.
    newer = {**with_added_keys(stored), "data": {**with_added_keys(stored)["data"], "resize": "area_from_2x", "jpeg_draft": False}}
    assert recipe_from_dict(copy.deepcopy(newer), source=str(path)).to_dict() == newer
    assert pickle.loads(pickle.dumps(recipe)) == recipe  # as dataclasses did (spawned worker processes)


def test_the_core_validates_with_the_sections_it_is_given():
    """What a task or a data format plugs in: its own models, typed in the recipe."""

    class Head(Section):
        k: int = 1

    class Options(Section):
        path: str = "x"

    sections = TaskSections("demo", Head, EmptySection, {"demo-format": Options})
    raw = {"task": "demo", "data": {"root": "r", "format": "demo-format", "options": {"path": "y"}},
           "model": {"head": {"k": 2}}}
    r = parse_recipe(raw, sections)
    assert (r.model.head.k, r.data.options.path) == (2, "y")
    assert r.to_dict()["data"]["options"] == {"path": "y"} and r.to_dict()["loss"] == {}
    with pytest.raises(UserError, match=r"^recipe: unknown key 'data.options.pth' \(did you mean 'data.options.path'\?\)$"):
        parse_recipe({**raw, "data": {**raw["data"], "options": {"pth": "y"}}}, sections)
    with pytest.raises(UserError, match=r"^recipe: 'data.format' must be 'demo-format' for demo, got 'imagefolder'$"):
        parse_recipe({"task": "demo", "data": {"root": "r"}}, sections)


def test_a_format_has_one_options_model_and_a_task_its_own_only_where_it_reads_it_differently():
    from visiontk.data.formats.coco import CocoOptions
    from visiontk.data.formats.masks import MaskFolderOptions
    from visiontk.data.formats.voc import VocSegmentationOptions
    from visiontk.recipe import format_options
    from visiontk.tasks.detect.formats import DetectCocoOptions, DetectVocOptions, DetectYoloOptions
    from visiontk.tasks.registry import get_task

    segment, detect = get_task("segment").data_options(), get_task("detect").data_options()
    assert segment == {"masks": MaskFolderOptions, "voc": VocSegmentationOptions, "coco": CocoOptions}
    assert detect == {"coco": DetectCocoOptions, "yolo": DetectYoloOptions, "voc": DetectVocOptions}
    for name, model in detect.items():  # the format's own options, and min_visibility
        assert issubclass(model, format_options(name))
        assert set(model.model_fields) - set(format_options(name).model_fields) == {"min_visibility"}
    assert list(get_task("classify").data_options()) == ["imagefolder", "signals", "text"]


def test_the_core_imports_no_task_engine_or_command():
    code = ("import sys, visiontk.recipe; "
            "print([m for m in sys.modules if m.startswith(('visiontk.tasks', 'visiontk.engine', 'visiontk.commands'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_stages_give_train_epochs_and_a_different_value_is_warned_about(monkeypatch):
    said = []
    monkeypatch.setattr("visiontk.console.warn", said.append)
    raw = {"task": "classify", "data": {"root": "x"}, "train": {"epochs": 9}, "stages": [{"epochs": 2}, {"epochs": 3}]}
    assert recipe_from_dict(copy.deepcopy(raw), source="r.yaml").train.epochs == 5
    assert said == ["r.yaml: 'train.epochs' (9) is replaced by the sum of the stages' epochs (5)"]
    raw["train"]["epochs"] = 5
    del said[:]
    assert recipe_from_dict(raw).train.epochs == 5 and said == []
