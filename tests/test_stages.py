"""Fine-tuning stages in the shared trainer: freezing, batch-norm statistics, per-block
learning rates, the stage column of results.csv, and exact resume across stages."""
from __future__ import annotations

import csv

import pytest
import torch

from visiontk.engine.trainer import Interrupted, Trainer
from visiontk.errors import UserError
from visiontk.tasks.recipes import recipe_from_dict


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory):
    from visiontk.data.synth import synth_classify

    root = tmp_path_factory.mktemp("stages-data")
    synth_classify(root, n=96, size=32, seed=1)
    return root


def _recipe(data, **extra) -> dict:
    raw = {
        "task": "classify",
        "name": "t",
        "model": {"backbone": "tinycnn", "backbone_options": {"width": 4}, "head": {"pool": "max"}},
        "data": {"root": str(data), "image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3,
                 "augment": [{"HorizontalFlip": {"p": 0.5}}]},
        "train": {"batch_size": 16, "optimizer": "sgd", "lr": 0.05, "schedule": "step", "step_size": 1,
                  "gamma": 0.5, "warmup_iters": 2, "seed": 3},
        "output": {"plots": False},
    }
    for key, value in extra.items():
        section, _, name = key.partition("__")
        if name:
            raw[section][name] = value
        else:
            raw[section] = value
    return raw


def _train(raw: dict, project, name: str, resume=None) -> Trainer:
    trainer = Trainer(recipe_from_dict(raw), device="cpu", project=str(project), name=name, resume=resume)
    trainer.fit()
    return trainer


@pytest.fixture(scope="module")
def source_ckpt(tiny_shapes, tmp_path_factory):
    """A visiontk checkpoint to fine-tune from (2 epochs on the same classes)."""
    runs = tmp_path_factory.mktemp("stages-source")
    raw = _recipe(tiny_shapes, train__epochs=2)
    _train(raw, runs, "source")
    return runs / "classify" / "source" / "last.pt"


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _block_keys(state: dict, block: int) -> list[str]:
    return [k for k in state if k.startswith(f"backbone.body.stages.{block}.")]


def test_head_stage_freezes_backbone_weights_and_bn_statistics(tiny_shapes, source_ckpt, tmp_path):
    raw = _recipe(tiny_shapes, model__pretrained=str(source_ckpt), stages=[{"epochs": 1, "trainable": "head"}])
    _train(raw, tmp_path, "probe")
    old, new = _load(source_ckpt)["model"], _load(tmp_path / "classify" / "probe" / "last.pt")["model"]
    backbone = [k for k in old if k.startswith("backbone.")]
    assert any("running_mean" in k for k in backbone) and any("num_batches_tracked" in k for k in backbone)
    for k in backbone:
        assert torch.equal(old[k], new[k]), k
    head = [k for k in old if k.startswith("head.")]
    assert head and any(not torch.equal(old[k], new[k]) for k in head)


def test_last_k_blocks_train_and_the_rest_stays_frozen(tiny_shapes, source_ckpt, tmp_path):
    raw = _recipe(tiny_shapes, model__pretrained=str(source_ckpt), stages=[{"epochs": 1, "trainable": 2}])
    _train(raw, tmp_path, "last2")
    old, new = _load(source_ckpt)["model"], _load(tmp_path / "classify" / "last2" / "last.pt")["model"]
    for block in (0, 1, 2):
        for k in _block_keys(old, block):
            assert torch.equal(old[k], new[k]), k
    for block in (3, 4):
        keys = _block_keys(old, block)
        assert any(not torch.equal(old[k], new[k]) for k in keys if k.endswith("weight")), block
        assert any(not torch.equal(old[k], new[k]) for k in keys if k.endswith("running_mean")), block


def test_bn_frozen_keeps_running_statistics_while_weights_train(tiny_shapes, source_ckpt, tmp_path):
    raw = _recipe(tiny_shapes, model__pretrained=str(source_ckpt),
                  stages=[{"epochs": 1, "trainable": "all", "bn": "frozen"}])
    _train(raw, tmp_path, "bnfrozen")
    old, new = _load(source_ckpt)["model"], _load(tmp_path / "classify" / "bnfrozen" / "last.pt")["model"]
    stats = [k for k in old if k.startswith("backbone.") and ("running_" in k or "num_batches" in k)]
    assert stats
    for k in stats:
        assert torch.equal(old[k], new[k]), k
    convs = [k for k in old if k.startswith("backbone.") and k.endswith("0.0.weight")]
    assert convs and all(not torch.equal(old[k], new[k]) for k in convs)


def test_per_block_learning_rates_in_the_optimizer(tiny_shapes, tmp_path):
    lr, scale, decay = 0.04, 0.1, 0.5
    raw = _recipe(tiny_shapes, stages=[{"epochs": 1, "trainable": 3, "lr": lr, "backbone_lr_scale": scale,
                                        "layer_decay": decay}])
    trainer = _train(raw, tmp_path, "lr")
    model = trainer.model
    blocks = model.backbone.stage_modules()
    owner = {id(p): i for i, m in enumerate(blocks) for p in m.parameters()}
    head = {id(p) for p in model.head.parameters()}
    seen = set()
    for group in trainer.optimizer.param_groups:
        ids = {id(p) for p in group["params"]}
        seen |= ids
        if group["name"].startswith("head"):
            assert ids <= head
            assert group["initial_lr"] == pytest.approx(lr)
        else:
            block = int(group["name"].split(".")[1].split("_")[0])
            assert {owner[i] for i in ids} == {block}
            assert block >= 2  # only the 3 deepest of 5 blocks train
            assert group["initial_lr"] == pytest.approx(lr * scale * decay ** (4 - block))
        assert group["weight_decay"] == (0.0 if group["name"].endswith("no_decay") else raw["train"].get("weight_decay", 5e-4))
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert seen == trainable
    assert trainable == head | {i for i, b in owner.items() if b >= 2}
    # The same rates travel in last.pt's optimizer state.
    saved = _load(tmp_path / "classify" / "lr" / "last.pt")["optimizer"]["param_groups"]
    assert sorted(g["initial_lr"] for g in saved) == sorted(g["initial_lr"] for g in trainer.optimizer.param_groups)


def test_stage_column_and_recipe_checks(tiny_shapes, tmp_path):
    raw = _recipe(tiny_shapes, stages=[{"epochs": 1, "trainable": "head"}, {"epochs": 1, "trainable": "all"}])
    _train(raw, tmp_path, "cols")
    rows = list(csv.DictReader(open(tmp_path / "classify" / "cols" / "results.csv")))
    assert [(r["epoch"], r["stage"]) for r in rows] == [("1", "1"), ("2", "2")]
    with pytest.raises(UserError, match="has 5"):
        _train(_recipe(tiny_shapes, stages=[{"epochs": 1, "trainable": 6}]), tmp_path, "bad")
    assert recipe_from_dict(_recipe(tiny_shapes, train__epochs=3, stages=[{"epochs": 1}, {"epochs": 2}])).train.epochs == 3
    assert recipe_from_dict(_recipe(tiny_shapes, train__epochs=9, stages=[{"epochs": 2}])).train.epochs == 2
    with pytest.raises(UserError, match=r"stages\[1\].epochs"):
        recipe_from_dict(_recipe(tiny_shapes, stages=[{"epochs": 1}, {"epochs": 0}]))


@pytest.mark.parametrize("stop_at", [1, 2], ids=["at-the-stage-boundary", "inside-stage-2"])
def test_resume_across_stages_is_exact(tiny_shapes, tmp_path, monkeypatch, stop_at):
    stages = [{"epochs": 1, "trainable": "head"},
              {"epochs": 2, "trainable": 2, "lr": 0.02, "backbone_lr_scale": 0.5, "bn": "frozen"}]
    raw = _recipe(tiny_shapes, stages=stages)
    _train(raw, tmp_path, "straight")
    original = Trainer._train_epoch

    def interrupt(self, epoch, *args, **kwargs):
        if epoch == stop_at:
            raise KeyboardInterrupt
        return original(self, epoch, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_train_epoch", interrupt)
    with pytest.raises(Interrupted):
        _train(raw, tmp_path, "killed")
    monkeypatch.setattr(Trainer, "_train_epoch", original)
    last = tmp_path / "classify" / "killed" / "last.pt"
    assert _load(last)["epoch"] == stop_at
    _train(raw, tmp_path, "killed", resume=str(last))
    a, b = _load(tmp_path / "classify" / "straight" / "last.pt"), _load(last)
    assert a["epoch"] == b["epoch"] == 3 and b["stage"] == 1
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [r["stage"] for r in b["history"]] == [1, 2, 2]
