"""benchmarks/peers_bench.py without the peers: its arithmetic and tables, the one line it
prints when the peers are missing, and the packages `make bench-peers` installs."""
import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "peers_bench.py"


@pytest.fixture(scope="module")
def pb():
    spec = importlib.util.spec_from_file_location("peers_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_round_metrics_from_a_one_batch_run_and_a_full_run(pb):
    # 32 images in 4 s, 256 in 10 s: 224 images in the 6 s difference.
    m = pb.round_metrics(4.0, 10.0, 32, 256)
    assert m["wall_ms"] == pytest.approx(10_000 / 256)
    assert m["steady"] == pytest.approx(224 / 6)
    assert m["startup"] == pytest.approx(4.0 - 32 / (224 / 6))
    # A full run no slower than the small one (load from elsewhere): no steady rate, not a huge one.
    bad = pb.round_metrics(5.0, 4.0, 32, 256)
    assert math.isnan(bad["steady"]) and bad["wall_ms"] == pytest.approx(4000 / 256)


def test_spread_gives_median_and_range_and_ignores_nan(pb):
    assert pb.spread([1.0, 3.0, 2.0]) == "2.00 (1.00-3.00)"
    assert pb.spread([2.5]) == "2.50"
    assert pb.spread([float("nan"), 4.0, 2.0], "{:.1f}") == "3.0 (2.0-4.0)"
    assert pb.spread([]) == "-"


def test_ratio_table_is_per_round_and_names_the_best_backend(pb):
    def rounds(walls, rates):
        return [{"wall_ms": w, "steady": r, "startup": 1.0} for w, r in zip(walls, rates)]

    results = {
        "visiontk torch": {"what": "a", "rounds": rounds([10, 20], [100, 50]), "rss_mb": [900, 950]},
        "visiontk openvino": {"what": "b", "rounds": rounds([8, 10], [150, 120]), "rss_mb": [800]},
        "ultralytics": {"what": "c", "rounds": rounds([12, 40], [80, 20]), "rss_mb": [1000]},
    }
    table = pb.ratio_table(results, [("visiontk torch", "ultralytics"), ("visiontk openvino", "ultralytics")])
    lines = table.splitlines()
    # end to end: 12/10 = 1.2 and 40/20 = 2.0 -> median 1.6; steady: 100/80 = 1.25, 50/20 = 2.5.
    assert lines[2] == "| visiontk torch | ultralytics | 1.60 (1.20-2.00)x | 1.88 (1.25-2.50)x | -50 |"
    # openvino: 12/8 = 1.5, 40/10 = 4; 150/80 = 1.875, 120/20 = 6.
    assert lines[3] == "| **visiontk openvino** (best) | ultralytics | 2.75 (1.50-4.00)x | 3.94 (1.88-6.00)x | -200 |"
    assert pb.best_backend(results, ["visiontk torch", "visiontk openvino"]) == "visiontk openvino"
    assert "| visiontk torch | a | 15.0 (10.0-20.0) | 75.0 (50.0-100.0) | 1.00 (1.00-1.00) | 950 |" in \
        pb.contender_table(results)


def test_without_peers_it_prints_how_to_get_them_and_exits_0(pb, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(pb, "PEERS_VENV", tmp_path / "no-venv")
    monkeypatch.setattr(pb, "has_peers", lambda python: False)
    assert pb.main([]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [pb.HOW_TO_GET] and "make bench-peers" in out
    assert pb.main(["--peers-python", "/nonexistent/python"]) == 2


def test_peers_requirements_come_from_pyproject(pb):
    reqs = pb.peer_requirements()
    assert any(r.startswith("torch==") for r in reqs) and any(r.startswith("torchvision==") for r in reqs)
    assert any(r.startswith("ultralytics") for r in reqs)
    assert any(r.startswith("segmentation-models-pytorch") for r in reqs)
    makefile = (SCRIPT.parents[1] / "Makefile").read_text()
    assert "peers_bench.py --print-requirements" in makefile


def test_help_runs_without_torch_imports():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--backends" in proc.stdout and "--quick" in proc.stdout
