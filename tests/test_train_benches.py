"""benchmarks/segment_bench.py and detect_bench.py: the plain loop takes turns with the
Trainer step by step inside one fit(), and its seconds are taken out of the Trainer's
epoch time (no speed is checked here)."""
import importlib.util
import sys
import time
from pathlib import Path

import pytest

from visiontk.data.synth import synth_detect, synth_segment

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

pytestmark = pytest.mark.usefixtures("one_thread")


def _load(name: str):
    sys.path.insert(0, str(BENCHMARKS))  # the benches import step_interleave from their folder
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def _detect_recipe(root: Path, n: int):
    from visiontk.tasks.recipes import load_recipe

    synth_detect(root, n=n, size=128, seed=0)
    return load_recipe("detect/shapes", [f"data.root={root}", "data.synthetic=null",
                                         "train.epochs=1", "output.plots=false"])


def test_segment_bench_takes_turns_step_by_step_in_every_trainer_epoch(tmp_path):
    bench = _load("segment_bench")
    synth_segment(tmp_path / "shapes", n=16, size=64, seed=0)
    recipe = bench.make_recipe("fcn8s", tmp_path / "shapes", 64, 3, 4)
    plain = bench.PlainLoop(recipe)
    trainer = bench.StepBySide(recipe, plain.steps, device="cpu", project=str(tmp_path / "runs"))
    trainer.fit()
    n_train = len(trainer.orders[0]) // 2
    assert n_train >= 2
    # Every epoch: a plain step before each of the Trainer's steps, nothing left over.
    assert trainer.orders == [["plain", "ours"] * n_train] * 3
    assert len(trainer.pairs) == 3 and all(o > 0 and p > 0 for o, p in trainer.pairs)


def test_detect_bench_takes_turns_and_counts_both_loops_images(tmp_path):
    bench = _load("detect_bench")
    from visiontk.tasks.registry import get_task

    recipe = _detect_recipe(tmp_path / "shapes", 24)
    task = get_task("detect")
    trainer = bench.StepBySide(recipe, lambda: bench.PlainLoop(recipe, task, 0).steps(), device="cpu",
                               project=str(tmp_path / "runs"))
    trainer.fit()
    (order,) = trainer.orders
    assert order == ["plain", "ours"] * (len(order) // 2) and len(order) >= 4
    ours, plain = trainer.pairs[0]
    assert ours > 0 and plain > 0


def test_the_plain_steps_seconds_are_taken_out_of_the_trainers_epoch(tmp_path):
    """Plain steps that only sleep 0.2 s each: the plain rate is at most 5 images/s, and the
    Trainer's rate, with those seconds taken out, is far above its epoch's own (which holds
    them). Without the subtraction both Trainer rates would be the same."""
    interleave = _load("step_interleave")
    recipe = _detect_recipe(tmp_path / "shapes", 24)
    calls = []

    def sleepy_steps():
        for _ in range(4):
            time.sleep(0.2)
            calls.append(1)
            yield 1

    trainer = interleave.StepBySide(recipe, sleepy_steps, device="cpu", project=str(tmp_path / "runs"))
    trainer.fit()
    ours, plain = trainer.pairs[0]
    ours_seconds, plain_seconds = trainer.seconds[0]
    assert len(calls) == 4  # the plain steps left over when the Trainer's epoch ended ran too
    assert plain_seconds >= 0.8 and plain == pytest.approx(4 / plain_seconds)  # the 4 sleeps, however slow the machine
    # The Trainer's own seconds: its epoch's (which hold the sleeps) less the plain steps'.
    epoch = trainer.history[0]
    assert ours_seconds == pytest.approx(epoch["time"] - plain_seconds, abs=2e-3)
    assert ours > 1.5 * epoch["train/img_per_s"]
