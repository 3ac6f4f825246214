"""DDP through torchrun: 2 CPU processes with gloo, only rank 0 writes; each rank validates its shard."""
import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from helpers import run_cli


# `python -m visiontk` that, as the interpreter exits, writes the names of the threads still
# alive (Linux names each in /proc/self/task/*/comm) to $THREADS_AT_EXIT/rank<RANK>.json.
# Registered first, the hook runs after every other atexit handler: just before finalization.
THREADS_AT_EXIT = """
import atexit, json, os, runpy

def report():
    names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
    with open(os.path.join(os.environ["THREADS_AT_EXIT"], f"rank{os.environ['RANK']}.json"), "w") as f:
        json.dump(names, f)

atexit.register(report)
runpy.run_module("visiontk", run_name="__main__", alter_sys=True)
"""


def _reporting_threads_at_exit(tmp_path) -> tuple[list[str], dict, Path]:
    """(command start, environment, folder): `visiontk` whose processes write the threads
    they still have at exit into the folder."""
    (tmp_path / "visiontk_main.py").write_text(THREADS_AT_EXIT)
    exit_dir = tmp_path / "threads_at_exit"
    exit_dir.mkdir()
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1", "THREADS_AT_EXIT": str(exit_dir)}
    return [str(tmp_path / "visiontk_main.py")], env, exit_dir


def _gloo_threads_at_exit(exit_dir: Path) -> list[list[str]]:
    """For each rank, its gloo threads (pt_gloo_runloop, gloo_tcp_loop) alive at exit."""
    return [[t for t in json.loads((exit_dir / f"rank{rank}.json").read_text()) if "gloo" in t] for rank in range(2)]


def test_torchrun_two_gloo_processes(tmp_path):
    from visiontk.data.synth import synth_classify

    data = tmp_path / "data"
    synth_classify(data, n=64, size=32, seed=2)
    runs = tmp_path / "runs"
    visiontk, env, exit_dir = _reporting_threads_at_exit(tmp_path)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
           *visiontk, "classify", "train", "classify/shapes",
           "--set", f"data.root={data}", "--set", "data.image_size=32", "--set", "train.epochs=2",
           "--set", "train.batch_size=16", "--set", "model.backbone_options.width=4", "--set", "output.plots=false",
           "--device", "cpu", "--project", str(runs), "--name", "ddp"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "device cpu x2" in res.stderr
    # The process group, gloo's threads with it, ended before the interpreter's exit: a gloo
    # worker still alive then could take the GIL during finalization and abort the rank
    # after the run's outputs were written, rarely (engine/distributed.py's shutdown).
    assert _gloo_threads_at_exit(exit_dir) == [[], []]
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
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert [json.loads(line) for line in res.stdout.splitlines()] == [metrics]


def test_failed_start_of_two_ranks_ends_the_process_group(tmp_path):
    # Both ranks join the group, then stop on a missing weights file before training's loop.
    # Started as torchrun starts them, without torchrun: it would stop the other rank as soon
    # as one fails, maybe before that rank's exit.
    visiontk, env, exit_dir = _reporting_threads_at_exit(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    missing = tmp_path / "missing.pt"
    ranks = [subprocess.Popen(
        [sys.executable, *visiontk, "classify", "train", "classify/shapes", "--set", f"model.pretrained={missing}",
         "--set", f"data.root={tmp_path / 'data'}", "--device", "cpu", "--project", str(tmp_path / "runs")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
             "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}) for rank in range(2)]
    for rank in ranks:
        _, err = rank.communicate()
        assert rank.returncode == 2, err[-3000:]
        assert err == f"error: model.pretrained: weights file {missing} does not exist\n"
    assert _gloo_threads_at_exit(exit_dir) == [[], []]
