"""A run that cannot start fails before the work and leaves nothing behind (issue 13, item 4):
no run folder holding only recipe.yaml, no -2 suffix on the next try."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .support import TINY, assert_error, invoke


def train(root: Path, runs: Path, *extra: str):
    return invoke("classify", "train", "classify/shapes", *TINY, "--set", f"data.root={root}", *extra,
                  "--project", runs, "--name", "t")


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "torch-home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def test_missing_pretrained_weights_fail_before_the_data_is_read(tiny_data, tmp_path, empty_torch_home):
    runs = tmp_path / "runs"
    weights = ["--set", "model.backbone=resnet18", "--set", "model.backbone_options={}", "--set", "model.pretrained=imagenet"]
    cache = empty_torch_home / "hub" / "checkpoints"
    message = (f"ImageNet weights for resnet18 (IMAGENET1K_V1) are not in the local cache: put resnet18-f37072fd.pth "
               f"into {cache} (it comes from https://download.pytorch.org/models/resnet18-f37072fd.pth), "
               f"or give model.pretrained a file path")
    for _ in range(2):  # the second try is no "-2"
        assert_error(train(tiny_data, runs, *weights), message)
        assert not runs.exists()
    # Even with a data root that does not exist: the weights are asked for first.
    assert_error(train(tmp_path / "nowhere", runs, *weights), message)
    assert not runs.exists()


def test_unreadable_data_root_leaves_nothing_under_project(tmp_path):
    runs = tmp_path / "runs"
    assert_error(train(tmp_path / "nowhere", runs),
                 f"{tmp_path / 'nowhere'}: data root does not exist (data.root); give it: --set data.root=PATH")
    (tmp_path / "a-file").write_bytes(b"not a folder")
    out = train(tmp_path / "a-file", runs)
    assert out.returncode == 2 and str(tmp_path / "a-file") in out.stderr, out.stderr
    assert not runs.exists()


def test_a_run_failing_in_its_first_epoch_removes_its_folder_and_the_next_is_not_renumbered(tiny_data, tmp_path):
    """No training image readable: found only when the first epoch reads them. The folders the
    run made go (runs/classify/t), a folder that was there before stays with its files."""
    data, runs = tmp_path / "data", tmp_path / "runs"
    shutil.copytree(tiny_data, data)
    (runs / "keep").mkdir(parents=True)
    (runs / "keep" / "mine.txt").write_text("not the run's")
    originals = {}
    for image in (data / "train").rglob("*.png"):
        originals[image] = image.read_bytes()
        image.write_bytes(b"not an image")
    out = train(data, runs)
    assert out.returncode == 2 and "no training image could be read in epoch 1" in out.stderr, out.stderr
    assert sorted(p.relative_to(runs).as_posix() for p in runs.rglob("*")) == ["keep", "keep/mine.txt"]
    for image, content in originals.items():
        image.write_bytes(content)
    out = train(data, runs)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (runs / "classify").iterdir()) == ["t"]
    assert {"recipe.yaml", "last.pt", "results.csv"} <= {p.name for p in (runs / "classify" / "t").iterdir()}


def test_the_run_folder_is_claimed_when_made_not_when_the_run_was_set_up(tmp_path):
    """Checks may take a while (a large data set is read): a folder of the same name made
    meanwhile by another run is never shared; this run takes the next free name."""
    from visiontk.engine.trainer import Trainer
    from visiontk.tasks.recipes import load_recipe

    trainer = Trainer(load_recipe("classify/shapes", [f"data.root={tmp_path / 'data'}"]), device="cpu",
                      project=str(tmp_path / "runs"), name="t")
    assert trainer.run_dir == tmp_path / "runs" / "classify" / "t"
    (tmp_path / "runs" / "classify" / "t").mkdir(parents=True)  # the other run
    trainer._make_run_dir()
    assert trainer.run_dir == tmp_path / "runs" / "classify" / "t-2"
    assert (trainer.run_dir / "recipe.yaml").is_file() and not any((tmp_path / "runs" / "classify" / "t").iterdir())
    trainer._remove_unstarted_run()  # removes its own folder only
    assert sorted(p.name for p in (tmp_path / "runs" / "classify").iterdir()) == ["t"]
