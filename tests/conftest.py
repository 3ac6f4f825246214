"""Shared fixtures: generated data sets are made once per session and reused."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import run_cli  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def shapes_classify(tmp_path_factory) -> Path:
    from visiontk.data.synth import synth_classify

    root = tmp_path_factory.mktemp("shapes-classify")
    synth_classify(root, n=3000, size=64, seed=0)
    return root


@pytest.fixture(scope="session")
def trained_classifier(shapes_classify, tmp_path_factory) -> Path:
    """The shapes demo recipe trained once for the whole session: returns its run dir."""
    runs = tmp_path_factory.mktemp("runs")
    result = run_cli("classify", "train", "classify/shapes", "--set", f"data.root={shapes_classify}",
                     "--project", str(runs), "--name", "shapes")
    assert result.returncode == 0, result.stderr
    return runs / "classify" / "shapes"


@pytest.fixture(scope="session")
def shapes_detect(tmp_path_factory) -> Path:
    from visiontk.data.synth import synth_detect

    root = tmp_path_factory.mktemp("shapes-detect")
    synth_detect(root, n=400, size=128, seed=0)
    return root


@pytest.fixture(scope="session")
def trained_detector(shapes_detect, tmp_path_factory) -> dict:
    """The detect shapes recipe (calibration: width 8, S=8, SGD + warmup) trained once, 15 epochs.

    In-process on one thread: with other jobs on the 2 cores, small convolutions
    on 2 threads ran 5-20x slower. Returns the Trainer's result (run_dir, metrics, ...).
    """
    from visiontk.engine.trainer import Trainer
    from visiontk.recipe import load_recipe

    recipe = load_recipe("detect/shapes", [f"data.root={shapes_detect}", "train.epochs=15", "train.seed=0"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = Trainer(recipe, device="cpu", project=str(tmp_path_factory.mktemp("runs")), name="shapes").fit()
    finally:
        torch.set_num_threads(threads)
    return {**result, "run_dir": Path(result["run_dir"]), "data": shapes_detect}
