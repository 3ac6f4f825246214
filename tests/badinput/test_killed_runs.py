"""Killed and interrupted training runs never lose the run.

SIGKILL at chosen moments (during a checkpoint write, during an epoch, while
results.csv is being replaced), then resume: last.pt always loads, results.csv
never has a duplicated or missing epoch, and the final weights equal those of
a run that was never killed. Ctrl-C (SIGINT) exits 130 with a message saying
what was saved.

VISIONTK_TEST_SAVE_PAUSE makes every atomic write sleep between writing its
temp file and renaming it, so "during a checkpoint write" is a window the
test can hit by watching for the temp file.
"""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from visiontk.engine.checkpoint import load_checkpoint

EPOCHS = 5
pytestmark = pytest.mark.slow  # real processes started, killed and resumed: tens of seconds


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


class Run:
    """`python -m visiontk ARGS` in the background, its stderr in a file."""

    def __init__(self, argv: list[str], log: Path, pause: float = 0.3):
        env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "COLUMNS": "200", "OMP_NUM_THREADS": "1",
               "VISIONTK_TEST_SAVE_PAUSE": str(pause)}
        self.log = log
        with open(log, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "visiontk", *argv], stdout=subprocess.DEVNULL,
                                         stderr=err, env=env)

    def wait_for(self, condition, timeout: float = 300) -> None:
        """Poll `condition` until true; fail if the run ends first."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if condition():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"run ended (code {self.proc.returncode}) before the moment to kill it:\n"
                                     f"{self.log.read_text()}")
            time.sleep(0.01)
        self.proc.kill()
        raise AssertionError(f"timed out:\n{self.log.read_text()}")

    def signal(self, sig: int) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=120)

    def finish(self) -> int:
        return self.proc.wait(timeout=600)

    @property
    def stderr_lines(self) -> list[str]:
        return self.log.read_text().splitlines()


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

    # 1. During the write of epoch 2's last.pt: the old last.pt (epoch 1) stays.
    run = Run(args(data, runs, "killed"), tmp_path / "1.log")
    run.wait_for(lambda: rows(run_dir) == [1] and temp_files(run_dir, "last.pt"))
    run.signal(signal.SIGKILL)
    assert temp_files(run_dir, "last.pt")  # the kill did land inside the write
    assert check_consistent(run_dir) == 1

    # 2. During an epoch: right after an epoch's files are written.
    run = Run(resume, tmp_path / "2.log")
    run.wait_for(lambda: len(rows(run_dir)) >= 2 and not list(run_dir.glob(".*.tmp")))
    run.signal(signal.SIGKILL)
    done = check_consistent(run_dir)
    assert done >= 2

    # 3. While results.csv of the last epoch is being replaced: last.pt says the run
    #    is complete, results.csv is one row short.
    run = Run(resume, tmp_path / "3.log")
    run.wait_for(lambda: len(rows(run_dir)) == EPOCHS - 1 and temp_files(run_dir, "results.csv"))
    run.signal(signal.SIGKILL)
    assert check_consistent(run_dir) == EPOCHS and rows(run_dir) == list(range(1, EPOCHS))

    # 4. Resume: nothing left to train, but results.csv is rebuilt and temp files removed.
    run = Run(resume, tmp_path / "4.log", pause=0)
    assert run.finish() == 0, run.log.read_text()
    assert check_consistent(run_dir) == EPOCHS and rows(run_dir) == list(range(1, EPOCHS + 1))
    assert list(run_dir.glob(".*.tmp")) == []
    final = load_checkpoint(last, "classify")
    assert load_checkpoint(run_dir / "best.pt", "classify")["epoch"] == final["best_epoch"]

    # Never killed: the same weights (resume is exact at epoch boundaries).
    ref = Run(args(data, runs, "reference"), tmp_path / "ref.log", pause=0)
    assert ref.finish() == 0, ref.log.read_text()
    reference = load_checkpoint(runs / "classify" / "reference" / "last.pt", "classify")
    for key, value in reference["model"].items():
        assert torch.equal(final["model"][key], value), key


def test_ctrl_c_before_the_first_epoch_ends(data, tmp_path):
    runs = tmp_path / "runs"
    run_dir = runs / "classify" / "early"
    run = Run(args(data, runs, "early"), tmp_path / "run.log")
    # Epoch 1 always improves on nothing: best.pt is written first, then last.pt.
    run.wait_for(lambda: temp_files(run_dir, "best.pt"))
    assert run.signal(signal.SIGINT) == 130
    partial = run_dir / "interrupted.pt"
    assert run.stderr_lines[-1] == (f"error: interrupted before the first epoch ended, so there is nothing to resume; "
                                    f"the weights at the interrupt are in {partial}")
    assert "Traceback" not in run.log.read_text()
    ckpt = load_checkpoint(partial, "classify")
    assert ckpt["interrupted"] is True and ckpt["epoch"] == 0 and "optimizer" not in ckpt
    assert not (run_dir / "last.pt").exists() and list(run_dir.glob(".*.tmp")) == []


def test_ctrl_c_during_training_saves_and_points_at_the_resume(data, tmp_path):
    runs = tmp_path / "runs"
    run_dir = runs / "classify" / "ctrlc"
    run = Run(args(data, runs, "ctrlc"), tmp_path / "run.log")
    run.wait_for(lambda: len(rows(run_dir)) >= 1)
    assert run.signal(signal.SIGINT) == 130
    done = check_consistent(run_dir)
    last, partial = run_dir / "last.pt", run_dir / "interrupted.pt"
    assert run.stderr_lines[-1] == (f"error: interrupted; resume from the end of epoch {done} with --resume {last}; "
                                    f"the weights at the interrupt are in {partial}")
    assert "Traceback" not in run.log.read_text()
    assert load_checkpoint(partial, "classify")["interrupted"] is True
    # The pointer works: the resumed run finishes.
    run = Run([*args(data, runs, "ctrlc"), "--resume", str(last)], tmp_path / "resume.log", pause=0)
    assert run.finish() == 0, run.log.read_text()
    assert rows(run_dir) == list(range(1, EPOCHS + 1))
