"""benchmarks/segment_bench.py and detect_bench.py: the plain loop's epochs run next to the
Trainer's, in alternating order, inside one fit() (no timing checked here)."""
import importlib.util
from pathlib import Path

import pytest

from visiontk.data.synth import synth_detect, synth_segment
from visiontk.engine.trainer import Trainer

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

pytestmark = pytest.mark.usefixtures("one_thread")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _log_trainer_epochs(monkeypatch, log: list) -> None:
    original = Trainer._train_epoch

    def logged(self, epoch, *args):
        log.append(("ours", epoch))
        return original(self, epoch, *args)

    monkeypatch.setattr(Trainer, "_train_epoch", logged)


def test_segment_bench_pairs_each_trainer_epoch_with_a_plain_epoch(tmp_path, monkeypatch):
    bench = _load("segment_bench")
    synth_segment(tmp_path / "shapes", n=16, size=64, seed=0)
    recipe = bench.make_recipe("fcn8s", tmp_path / "shapes", 64, 3, 4)
    log: list = []
    _log_trainer_epochs(monkeypatch, log)
    plain = bench.PlainLoop(recipe)
    epoch = plain.epoch
    monkeypatch.setattr(plain, "epoch", lambda: log.append(("plain", None)) or epoch())
    trainer = bench.SideBySide(recipe, plain, device="cpu", project=str(tmp_path / "runs"))
    trainer.fit()
    # Which loop goes first alternates, epoch by epoch.
    assert log == [("ours", 0), ("plain", None), ("plain", None), ("ours", 1), ("ours", 2), ("plain", None)]
    assert len(trainer.pairs) == 3
    assert [o for o, _ in trainer.pairs] == [row["train/img_per_s"] for row in trainer.history]
    assert all(p > 0 for _, p in trainer.pairs)


@pytest.mark.parametrize("plain_first", [False, True])
def test_detect_bench_runs_the_plain_epoch_inside_the_trainers_fit(tmp_path, monkeypatch, plain_first):
    bench = _load("detect_bench")
    from visiontk.tasks.recipes import load_recipe
    from visiontk.tasks.registry import get_task

    synth_detect(tmp_path / "shapes", n=12, size=128, seed=0)
    recipe = load_recipe("detect/shapes", [f"data.root={tmp_path / 'shapes'}", "data.synthetic=null"])
    log: list = []
    _log_trainer_epochs(monkeypatch, log)
    plain_epoch = bench.plain_epoch
    monkeypatch.setattr(bench, "plain_epoch", lambda *a: log.append(("plain", None)) or plain_epoch(*a))
    ours, plain = bench.side_by_side(recipe, get_task("detect"), tmp_path / "runs", seed=0, plain_first=plain_first)
    assert log == ([("plain", None), ("ours", 0)] if plain_first else [("ours", 0), ("plain", None)])
    assert ours > 0 and plain > 0
