"""`make gpu-check` on a machine without a GPU: one line on stderr, exit 2, nothing else done."""
import importlib.util
from pathlib import Path

import pytest
import torch


def test_gpu_check_without_a_gpu_says_so_in_one_line_and_exits_2(capsys, tmp_path, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: `make gpu-check` runs the check itself")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.chdir(tmp_path)
    assert module.main() == 2
    out, err = capsys.readouterr()
    assert out == "" and list(tmp_path.iterdir()) == []
    assert len(err.splitlines()) == 1 and err.startswith("gpu-check: no CUDA GPU on this machine (torch ")
    assert "benchmarks/gpu_check.py" in (script.parents[1] / "Makefile").read_text()
