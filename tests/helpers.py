"""Helpers for tests that run the CLI as a user would."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(*args: str, stdin: str | None = None, cwd: Path | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run `python -m visiontk ARGS` as a user would: real stdin, stdout, stderr, exit code."""
    # One torch thread per CLI process: with two, a busy 2-core machine slowed
    # small-model training ~7x (threads spinning against each other).
    env = {"OMP_NUM_THREADS": "1", **os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "visiontk", *args], input=stdin, capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)
