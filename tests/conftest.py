"""Shared fixtures: generated data sets are made once per session and reused.

Tests marked `outcome` assert what a short training reaches. Such a result
depends on the CPU (ATen and oneDNN pick other kernels on other machines, and
the sums round differently), so their thresholds come from runs under several
kernel settings and seeds (tests/calibration/): VISIONTK_TEST_SEED sets the
training seed they use (default 0), and with VISIONTK_OUTCOME_LOG set each of
them appends the values it measured to that file, before asserting.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import SEED, run_cli, torch_threads  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session", autouse=True)
def visiontk_cache(tmp_path_factory) -> Path:
    """The cache of exported models and measured predict settings (engine/cache_dir.py):
    one per test session, not the user's ~/.cache (commands run by the tests inherit it)."""
    if "VISIONTK_CACHE_DIR" not in os.environ:
        os.environ["VISIONTK_CACHE_DIR"] = str(tmp_path_factory.mktemp("visiontk-cache"))
    return Path(os.environ["VISIONTK_CACHE_DIR"])


@pytest.fixture
def outcome(request):
    """`outcome(name=value, ...)`: record what an outcome test measured (for the calibration runs)."""

    def record(**values) -> None:
        log = os.environ.get("VISIONTK_OUTCOME_LOG")
        if log:
            with open(log, "a", encoding="utf-8") as f:
                f.write(json.dumps({"test": request.node.nodeid, "seed": SEED, **values}) + "\n")

    return record


@pytest.fixture
def one_thread():
    """Tiny tensors: one torch thread is faster, and does not fight the other jobs of a shared 2-core CPU."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def shapes_classify(tmp_path_factory) -> Path:
    from visiontk.data.synth import synth_classify

    root = tmp_path_factory.mktemp("shapes-classify")
    synth_classify(root, n=3000, size=64, seed=0)
    return root


@pytest.fixture(scope="session")
def trained_classifier(shapes_classify, tmp_path_factory) -> Path:
    """The shapes demo recipe, 6 epochs instead of 10, trained once for the whole session: returns its run dir."""
    runs = tmp_path_factory.mktemp("runs")
    result = run_cli("classify", "train", "classify/shapes", "--set", f"data.root={shapes_classify}",
                     "--set", "train.epochs=6", "--set", f"train.seed={SEED}", "--project", str(runs), "--name", "shapes")
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
    from visiontk.tasks.recipes import load_recipe

    recipe = load_recipe("detect/shapes", [f"data.root={shapes_detect}", "train.epochs=15", f"train.seed={SEED}"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = Trainer(recipe, device="cpu", project=str(tmp_path_factory.mktemp("runs")), name="shapes").fit()
    finally:
        torch.set_num_threads(threads)
    return {**result, "run_dir": Path(result["run_dir"]), "data": shapes_detect}
