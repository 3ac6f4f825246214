"""SIGTERM and SIGHUP stop a run like Ctrl-C, and resume stays exact with early stopping.

Schedulers stop jobs with SIGTERM and a closed terminal sends SIGHUP: the run
says so in one line, training saves interrupted.pt, temp files are removed,
and the exit code is the shell's 128 + the signal (143, 129). Every signal
lands at a moment the test observes (see helpers.start_cli).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import start_cli, wait_until

from visiontk.engine.checkpoint import load_checkpoint

from .test_killed_runs import args, check_consistent, rows, said, stop_then

pytestmark = pytest.mark.slow  # real processes started, signalled and resumed


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from visiontk.data.synth import synth_classify

    root = tmp_path_factory.mktemp("signal-data")
    synth_classify(root, n=120, size=32, seed=3, val_fraction=0.2)
    return root


def test_sigterm_during_training_saves_and_exits_143(data, tmp_path):
    runs = tmp_path / "runs"
    run_dir = runs / "classify" / "term"
    run = start_cli(*args(data, runs, "term"), log_dir=tmp_path / "logs")
    wait_until(said(run, "epoch 1/"), run, what="epoch 1's line")
    run.send(signal.SIGTERM)
    assert run.wait(timeout=120) == 143
    done = check_consistent(run_dir)
    last, partial = run_dir / "last.pt", run_dir / "interrupted.pt"
    assert run.stderr.splitlines()[-1] == (f"error: interrupted by SIGTERM; resume from the end of epoch {done} with "
                                           f"--resume {last}; the weights at the interrupt are in {partial}")
    assert "Traceback" not in run.stderr
    assert load_checkpoint(partial, "classify")["interrupted"] is True
    assert list(run_dir.glob(".*.tmp")) == []


def test_a_stop_signal_while_the_temp_file_is_made_leaves_no_temp_file(tmp_path, monkeypatch):
    """Seen once in a full run of test_sigterm_during_training_saves_and_exits_143: a
    .val_metrics.json.*.tmp left in the run folder. A stop signal acted on right after the temp
    file was made, before its name reached the cleanup, left it behind. Here SIGTERM arrives
    inside mkstemp: the write stops (the handler's exception), and no file is left."""
    import tempfile

    from visiontk.engine import checkpoint
    from visiontk.outputs.output_file import OutputFile

    class Stopped(Exception):
        pass

    def stop(signum, frame):
        raise Stopped

    real = tempfile.mkstemp

    def mkstemp_then_sigterm(*args, **kwargs):
        made = real(*args, **kwargs)
        signal.raise_signal(signal.SIGTERM)
        return made

    previous = signal.signal(signal.SIGTERM, stop)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_then_sigterm)
    try:
        with pytest.raises(Stopped):
            checkpoint.atomic_write_text("{}", tmp_path / "val_metrics.json")
        # The same for a staged output (predict's --out, summary.json, export): one helper makes both temps.
        with pytest.raises(Stopped):
            with OutputFile(tmp_path / "predictions.jsonl").staged() as staged:
                staged.write_text("{}\n")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert list(tmp_path.iterdir()) == []


def test_sighup_in_the_middle_of_a_checkpoint_write_exits_129(data, tmp_path):
    runs = tmp_path / "runs"
    run_dir = runs / "classify" / "hup"
    # Stopped with epoch 2's last.pt written to its temp file, not yet renamed.
    run = start_cli(*args(data, runs, "hup"), log_dir=tmp_path / "logs", stop_at=("last.pt", 2))
    assert stop_then(run, signal.SIGHUP, "the second last.pt write") == 129
    assert run.stderr.splitlines()[-1] == (f"error: interrupted by SIGHUP; resume from the end of epoch 1 with "
                                           f"--resume {run_dir / 'last.pt'}; the weights at the interrupt are in "
                                           f"{run_dir / 'interrupted.pt'}")
    assert check_consistent(run_dir) == 1
    assert list(run_dir.glob(".*.tmp")) == []


def test_sigterm_during_predict_removes_the_partial_out_file(tiny_ckpt, tmp_path):
    """predict reads its paths from stdin, so it waits there at a known moment:
    after writing the first records into the temp file that would replace --out."""
    from .support import pattern_image

    image = tmp_path / "a.png"
    pattern_image().save(image)
    out = tmp_path / "results.jsonl"
    out.write_text("old results\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "visiontk", "classify", "predict", str(tiny_ckpt), "-", "--out",
                             str(out), "--overwrite", "--batch-size", "1"], stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    proc.stdin.write(f"{image}\n".encode())
    proc.stdin.flush()
    temps = lambda: [p for p in tmp_path.glob(".results.jsonl.*.tmp") if p.stat().st_size > 0]  # noqa: E731
    wait_until(temps, timeout=120, what="the first record in the temp file")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.decode().splitlines()[-1] == "error: interrupted by SIGTERM"
    assert out.read_text() == "old results\n"
    assert list(tmp_path.glob(".results.jsonl.*")) == []


PATIENCE = ["--set", "train.patience=2", "--set", "train.lr=0.01", "--set", "train.epochs=12"]


def _final(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / "last.pt", "classify")


def test_resume_with_early_stopping_is_exact(data, tmp_path):
    """Killed while the patience counter is running (and once more after the epoch
    that stops the run): the resumed run stops at the same epoch, with the same weights."""
    runs, logs = tmp_path / "runs", tmp_path / "logs"
    ref = start_cli(*args(data, runs, "reference"), *PATIENCE, log_dir=logs)
    assert ref.wait() == 0, ref.stderr
    reference = _final(runs / "classify" / "reference")
    stopped_at = reference["epoch"]
    assert 2 < stopped_at < 12 and reference["bad_epochs"] == 2  # it did stop early, with the counter running

    run_dir = runs / "classify" / "killed"
    argv = [*args(data, runs, "killed"), *PATIENCE]
    # Killed right after last.pt of the epoch before the stop (counter at 1), then
    # after last.pt of the stopping epoch itself (before the run could end).
    for epoch in (stopped_at - 1, stopped_at):
        run = start_cli(*argv, *(["--resume", str(run_dir / "last.pt")] if epoch == stopped_at else []),
                        log_dir=logs, stop_at=("results.csv", epoch if epoch < stopped_at else 2))
        assert stop_then(run, signal.SIGKILL, f"results.csv of epoch {epoch}") == -signal.SIGKILL
        assert _final(run_dir)["epoch"] == epoch
    run = start_cli(*argv, "--resume", str(run_dir / "last.pt"), log_dir=logs)
    assert run.wait() == 0, run.stderr
    assert f"stopped early at epoch {stopped_at} (best epoch {reference['best_epoch']}); nothing to do" in run.stderr
    final = _final(run_dir)
    assert final["epoch"] == stopped_at and final["best_epoch"] == reference["best_epoch"]
    assert rows(run_dir) == list(range(1, stopped_at + 1))
    for key, value in reference["model"].items():
        assert torch.equal(final["model"][key], value), key


def test_nohup_keeps_sighup_ignored(tmp_path):
    """Under nohup (SIGHUP ignored by the parent) a closed terminal must not stop a run."""
    code = ("import signal; signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
            "from visiontk import stop_signals; stop_signals.install()\n"
            "assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN\n"
            "assert signal.getsignal(signal.SIGTERM) is stop_signals._raise_stopped\n")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ}, cwd=tmp_path)
