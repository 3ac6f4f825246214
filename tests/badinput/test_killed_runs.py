"""Killed and interrupted training runs never lose the run.

SIGKILL at chosen moments (during a checkpoint write, during an epoch, while
results.csv is being replaced), then resume: last.pt always loads, results.csv
never has a duplicated or missing epoch, and the final weights equal those of
a run that was never killed. Ctrl-C (SIGINT) exits 130 with a message saying
what was saved.

Every kill lands at a moment the test observes, never after a sleep: a line on
stderr, or the command stopping itself (SIGSTOP, from an audit hook the test
installs in the process, see helpers.start_cli) right before it renames a
written temp file over last.pt, best.pt or results.csv -- the middle of an
atomic write.
"""
from __future__ import annotations

import csv
import signal
from pathlib import Path

import pytest
import torch
from helpers import start_cli, wait_until

from visiontk.engine.checkpoint import load_checkpoint

EPOCHS = 5
pytestmark = pytest.mark.slow  # real processes started, killed and resumed: seconds each


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from visiontk.data.synth import synth_classify

    root = tmp_path_factory.mktemp("killed-data")
    synth_classify(root, n=120, size=32, seed=3, val_fraction=0.2)
    return root


def args(data: Path, runs: Path, name: str, epochs: int = EPOCHS) -> list[str]:
    return ["classify", "train", "classify/shapes", "--set", f"data.root={data}", "--set", "data.image_size=32",
            "--set", "model.backbone_options.width=4", "--set", f"train.epochs={epochs}", "--set", "train.batch_size=16",
            "--set", "train.warmup_iters=5", "--set", "output.plots=false", "--set", "data.synthetic=null",
            "--project", str(runs), "--name", name]


def start(argv: list[str], log_dir: Path, stop_at: tuple[str, int] | None = None):
    return start_cli(*argv, log_dir=log_dir, stop_at=stop_at)


def stop_then(run, sig: int, what: str) -> int:
    """Wait until the run stopped itself at its stop_at moment, then send `sig` (and let it go on)."""
    wait_until(run.stopped, run, what=what)
    run.send(sig)
    if sig != signal.SIGKILL:
        run.send(signal.SIGCONT)
    return run.wait(timeout=120)


def said(run, text: str):
    return lambda: text in run.stderr


def rows(run_dir: Path) -> list[int]:
    path = run_dir / "results.csv"
    if not path.exists():
        return []
    with open(path) as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


def temp_files(run_dir: Path, name: str) -> list[Path]:
    return list(run_dir.glob(f".{name}.*.tmp"))


def check_consistent(run_dir: Path) -> int:
    """last.pt loads; its history and results.csv hold each epoch once, in order.

    results.csv may lag last.pt by one epoch (a kill between the two renames);
    the resumed run rebuilds it from the history in last.pt.
    """
    ckpt = load_checkpoint(run_dir / "last.pt", "classify")
    epoch = ckpt["epoch"]
    assert [h["epoch"] for h in ckpt["history"]] == list(range(1, epoch + 1))
    assert rows(run_dir) in (list(range(1, epoch + 1)), list(range(1, epoch)))
    return epoch


def test_sigkill_at_several_moments_then_resume(data, tmp_path):
    runs = tmp_path / "runs"
    run_dir = runs / "classify" / "killed"
    last = run_dir / "last.pt"
    resume = [*args(data, runs, "killed"), "--resume", str(last)]
    logs = tmp_path / "logs"

    # 1. During the write of epoch 2's last.pt (written, not yet renamed): the old last.pt (epoch 1) stays.
    run = start(args(data, runs, "killed"), logs, stop_at=("last.pt", 2))
    assert stop_then(run, signal.SIGKILL, "the second last.pt write") == -signal.SIGKILL
    assert temp_files(run_dir, "last.pt")  # the kill did land inside the write
    assert check_consistent(run_dir) == 1

    # 2. During an epoch: as soon as epoch 2's line is printed (its files are written).
    run = start(resume, logs)
    wait_until(said(run, "epoch 2/"), run, what="epoch 2's line")
    run.send(signal.SIGKILL)
    run.wait()
    done = check_consistent(run_dir)
    assert done >= 2

    # 3. While results.csv of the last epoch is being replaced: last.pt says the run
    #    is complete, results.csv is one row short. A resumed run rewrites results.csv
    #    once at the start, then once per epoch it trains.
    run = start(resume, logs, stop_at=("results.csv", 1 + EPOCHS - done))
    assert stop_then(run, signal.SIGKILL, "the last results.csv write") == -signal.SIGKILL
    assert check_consistent(run_dir) == EPOCHS and rows(run_dir) == list(range(1, EPOCHS))

    # 4. Resume: nothing left to train, but results.csv is rebuilt and temp files removed.
    run = start(resume, logs)
    assert run.wait() == 0, run.stderr
    assert check_consistent(run_dir) == EPOCHS and rows(run_dir) == list(range(1, EPOCHS + 1))
    assert list(run_dir.glob(".*.tmp")) == []
    final = load_checkpoint(last, "classify")
    assert load_checkpoint(run_dir / "best.pt", "classify")["epoch"] == final["best_epoch"]

    # Never killed: the same weights (resume is exact at epoch boundaries).
    ref = start(args(data, runs, "reference"), logs)
    assert ref.wait() == 0, ref.stderr
    reference = load_checkpoint(runs / "classify" / "reference" / "last.pt", "classify")
    for key, value in reference["model"].items():
        assert torch.equal(final["model"][key], value), key


def test_ctrl_c_before_the_first_epoch_ends(data, tmp_path):
    runs = tmp_path / "runs"
    run_dir = runs / "classify" / "early"
    # Epoch 1 always improves on nothing: best.pt is written first, then last.pt.
    run = start(args(data, runs, "early"), tmp_path / "logs", stop_at=("best.pt", 1))
    assert stop_then(run, signal.SIGINT, "the first best.pt write") == 130
    partial = run_dir / "interrupted.pt"
    lines = run.stderr.splitlines()
    assert lines[-1] == (f"error: interrupted before the first epoch ended, so there is nothing to resume; "
                         f"the weights at the interrupt are in {partial}")
    assert "Traceback" not in run.stderr
    ckpt = load_checkpoint(partial, "classify")
    assert ckpt["interrupted"] is True and ckpt["epoch"] == 0 and "optimizer" not in ckpt
    assert not (run_dir / "last.pt").exists() and list(run_dir.glob(".*.tmp")) == []


def test_ctrl_c_during_training_saves_and_points_at_the_resume(data, tmp_path):
    runs = tmp_path / "runs"
    run_dir = runs / "classify" / "ctrlc"
    logs = tmp_path / "logs"
    run = start(args(data, runs, "ctrlc"), logs)
    wait_until(said(run, "epoch 1/"), run, what="epoch 1's line")
    run.send(signal.SIGINT)
    assert run.wait(timeout=120) == 130
    done = check_consistent(run_dir)
    last, partial = run_dir / "last.pt", run_dir / "interrupted.pt"
    assert run.stderr.splitlines()[-1] == (f"error: interrupted; resume from the end of epoch {done} with --resume "
                                           f"{last}; the weights at the interrupt are in {partial}")
    assert "Traceback" not in run.stderr
    assert load_checkpoint(partial, "classify")["interrupted"] is True
    # The pointer works: the resumed run finishes.
    run = start([*args(data, runs, "ctrlc"), "--resume", str(last)], logs)
    assert run.wait() == 0, run.stderr
    assert rows(run_dir) == list(range(1, EPOCHS + 1))
