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
