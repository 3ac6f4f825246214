"""Session fixtures for the bad-input corpus: a tiny data set and a tiny trained classifier."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers import torch_threads

from .support import TINY, invoke


@pytest.fixture(scope="package", autouse=True)
def _one_thread_here_and_in_started_processes():
    """These models are tiny, and with two threads on a busy 2-core machine a 1 s run took 20 s."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """48 train / 12 val synthetic shapes at 32 px (ImageFolder)."""
    from visiontk.data.synth import synth_classify

    root = tmp_path_factory.mktemp("tiny-shapes")
    synth_classify(root, n=60, size=32, seed=0, val_fraction=0.2)
    return root


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory) -> Path:
    """A classifier trained for 2 epochs (about a second): the run directory."""
    runs = tmp_path_factory.mktemp("tiny-runs")
    out = invoke("classify", "train", "classify/shapes", *TINY, "--set", f"data.root={tiny_data}",
                 "--set", "train.epochs=2", "--project", runs, "--name", "tiny")
    assert out.returncode == 0, out.stderr
    return runs / "classify" / "tiny"


@pytest.fixture(scope="session")
def tiny_ckpt(tiny_run) -> Path:
    return tiny_run / "best.pt"
