"""Training settings fitted to the data set's size (issue 13, item 3): engine/fit_to_data.py."""
from __future__ import annotations

import pytest

from visiontk.engine.fit_to_data import MAX_WARMUP_SHARE, fit_batch_size, step_schedule_note, warmup_iterations
from visiontk.engine.optim import lr_factor
from visiontk.errors import UserError
from visiontk.recipe.schema import TrainConfig
from visiontk.tasks.recipes import load_recipe


def test_warmup_in_epochs_becomes_iterations_of_this_data_set():
    cfg = TrainConfig(warmup_epochs=1.5, schedule="none")
    assert warmup_iterations(cfg, "train.warmup_epochs", iters_per_epoch=40, epochs=10) == (60, None)
    assert warmup_iterations(cfg, "train.warmup_epochs", iters_per_epoch=4, epochs=10) == (6, None)
    assert warmup_iterations(TrainConfig(warmup_iters=30), "train.warmup_iters", 40, 10) == (30, None)
    assert warmup_iterations(TrainConfig(), "train.warmup_iters", 40, 10) == (0, None)


def test_the_shipped_yolo_warmup_on_128_images_is_cut_to_half_the_run_with_a_note():
    """The issue's case: warmup_iters 1000 at batch 64 on 128 images is 2 iterations an epoch,
    270 in 135 epochs: the warmup never ended and the rate peaked at 0.27x."""
    cfg = TrainConfig(warmup_iters=1000, epochs=135, batch_size=64)
    iters, note = warmup_iterations(cfg, "train.warmup_iters", iters_per_epoch=2, epochs=135)
    assert iters == 135 == int(270 * MAX_WARMUP_SHARE)
    assert note == ("note: train.warmup_iters 1000 is more than half of the 270 iterations of the run "
                    "(135 epochs x 2); warming up over 135 iterations instead")
    fitted = cfg.model_copy(update={"warmup_iters": iters})
    no_warmup = cfg.model_copy(update={"warmup_iters": 0})
    # The warmup ends within the run: from iteration 134 on the rate is the cosine schedule's.
    assert all(lr_factor(fitted, it, 2, 270) == lr_factor(no_warmup, it, 2, 270) for it in range(134, 270))
    assert lr_factor(fitted, 133, 2, 270) < lr_factor(no_warmup, 133, 2, 270)
    peak = max(lr_factor(fitted, it, 2, 270) for it in range(270))
    assert peak > 0.5 and max(lr_factor(cfg, it, 2, 270) for it in range(270)) < 0.28
    # In epochs: named as given, with its iterations.
    _, note = warmup_iterations(TrainConfig(warmup_epochs=200), "train.warmup_epochs", 2, 135, "stage 2")
    assert note.startswith("note: train.warmup_epochs 200 (400 iterations) is more than half of the 270 "
                           "iterations of stage 2")
    # onecycle rises on its own: its warmup is never read, so never cut.
    assert warmup_iterations(TrainConfig(warmup_iters=1000, schedule="onecycle"), "k", 2, 135) == (1000, None)


def test_batch_larger_than_the_set_is_scaled_down_and_a_useless_step_schedule_is_said():
    assert fit_batch_size("train.batch_size", 64, 128) == (64, None)
    assert fit_batch_size("train.batch_size", 64, 20) == (
        20, "train.batch_size 64 is larger than the training set (20 images); using batches of 20")
    assert step_schedule_note(TrainConfig(schedule="step", step_size=30), 5).startswith(
        "note: train.step_size 30 is more than the 5 epochs")
    assert step_schedule_note(TrainConfig(schedule="step", step_size=5), 5) is None
    assert step_schedule_note(TrainConfig(schedule="cosine", step_size=30), 5) is None


def test_both_warmup_keys_are_refused_naming_them():
    with pytest.raises(UserError) as e:
        load_recipe("detect/yolo", ["train.warmup_iters=100"])
    assert str(e.value).endswith("recipes/detect/yolo.yaml: 'train.warmup_epochs' and 'train.warmup_iters' (100) both give the "
                            "warmup; set one of them (e.g. --set train.warmup_iters=0)")
    # A saved recipe holds both, the unused one at 0: valid.
    assert load_recipe("detect/yolo", ["train.warmup_iters=0"]).train.warmup_epochs == 3
    with pytest.raises(UserError, match="train.warmup_epochs"):
        load_recipe("detect/yolo", ["train.warmup_epochs=-1"])
