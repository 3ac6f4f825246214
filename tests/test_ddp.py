"""DDP through torchrun: 2 CPU processes with gloo, only rank 0 writes; each rank validates its shard."""
import csv
import json
import os
import subprocess
import sys

import torch
from helpers import run_cli


def test_torchrun_two_gloo_processes(tmp_path):
    from visiontk.data.synth import synth_classify

    data = tmp_path / "data"
    synth_classify(data, n=64, size=32, seed=2)
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
           "-m", "visiontk", "classify", "train", "classify/shapes",
           "--set", f"data.root={data}", "--set", "data.image_size=32", "--set", "train.epochs=2",
           "--set", "train.batch_size=16", "--set", "model.backbone_options.width=4", "--set", "output.plots=false",
           "--device", "cpu", "--project", str(runs), "--name", "ddp"]
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "device cpu x2" in res.stderr
    assert sorted(p.name for p in (runs / "classify").iterdir()) == ["ddp"]  # one run dir: only rank 0 wrote
    rows = list(csv.DictReader((runs / "classify" / "ddp" / "results.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    ckpt = torch.load(runs / "classify" / "ddp" / "last.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in ckpt["model"])
    # Validation was shared by the two ranks: it scored the whole val set, as eval in one process does.
    last = runs / "classify" / "ddp" / "last.pt"
    single = run_cli("classify", "eval", str(last), "--json", "--device", "cpu")
    assert single.returncode == 0, single.stderr[-3000:]
    metrics = json.loads(single.stdout)
    assert metrics["count"] == 16 and float(rows[-1]["val/top1"]) == float(f"{metrics['top1']:.6g}")
    # eval under torchrun: both ranks evaluate a shard, rank 0 alone prints the whole set's metrics.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           "-m", "visiontk", "classify", "eval", str(last), "--json", "--device", "cpu"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert [json.loads(line) for line in res.stdout.splitlines()] == [metrics]
