"""`make gpu-check`: what a person with a GPU runs first (about a minute).

Trains each task for 2 short epochs on `cuda` (synthetic shapes, in a temp
folder), predicts its validation images, and prints the throughput and the
settings used: device, precision (bf16 where the GPU has it, else fp16 with a
grad scaler), channels_last, pinned memory, decoding workers. With two GPUs or
more it also trains the classify set under `torchrun --nproc_per_node=<GPUs>`
(NCCL, one process per GPU pinned by LOCAL_RANK).

Without a GPU it prints one line and exits 2.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

# Synthetic set, recipe and overrides per task: small enough for a minute, large enough to time.
TASKS = {
    "classify": ("classify/shapes", "synth_classify", dict(n=2048, size=64), ["train.batch_size=128"]),
    "detect": ("detect/shapes", "synth_detect", dict(n=1024, size=128), ["train.batch_size=64"]),
    "segment": ("segment/shapes-unet", "synth_segment", dict(n=1024, size=128), ["train.batch_size=32"]),
}

VAL_IMAGES = {"classify": "val", "detect": "images/val", "segment": "val/images"}


def no_gpu_line() -> str | None:
    """The one line printed when there is nothing to check; None with a GPU."""
    import torch

    if torch.cuda.is_available():
        return None
    built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    return (f"gpu-check: no CUDA GPU on this machine (torch {torch.__version__}, {built}); "
            f"run it where `nvidia-smi` lists a GPU")


def check_task(task: str, root: Path) -> dict:
    import torch

    from visiontk.data import synth
    from visiontk.data.sources import iter_sources
    from visiontk.engine.predictor import Predictor
    from visiontk.engine.trainer import Trainer
    from visiontk.tasks.recipes import load_recipe

    recipe_name, writer, options, overrides = TASKS[task]
    data = root / f"{task}-data"
    getattr(synth, writer)(data, seed=0, **options)
    recipe = load_recipe(recipe_name, [f"data.root={data}", "train.epochs=2", "output.plots=false", *overrides])
    start = time.perf_counter()
    result = Trainer(recipe, device="cuda", project=str(root / "runs")).fit()
    torch.cuda.synchronize()
    train_s = time.perf_counter() - start
    run = Path(result["run_dir"])
    rows = list(csv.DictReader((run / "results.csv").open()))
    predictor = Predictor(run / "best.pt", task, device="cuda", batch_size=64, workers=4)
    val = data / VAL_IMAGES[task]
    paths = list(iter_sources([str(val)]))
    records: list = []
    predictor.run(paths[:64], records.append, progress=False)  # warm-up: cuDNN picks its kernels
    records.clear()
    start = time.perf_counter()
    predictor.run(paths, records.append, progress=False)
    torch.cuda.synchronize()
    predict_s = time.perf_counter() - start
    return {"task": task, "train img/s": float(rows[-1]["train/img_per_s"]), "train s": train_s,
            "predict img/s": len(paths) / predict_s, "images": len(paths), "settings": predictor.describe(),
            "amp": recipe.train.amp}


def check_ddp(root: Path, gpus: int) -> str:
    data = root / "classify-data"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}", "-m", "visiontk",
           "classify", "train", "classify/shapes", "--set", f"data.root={data}", "--set", "train.epochs=2",
           "--set", "output.plots=false", "--device", "cuda", "--project", str(root / "ddp")]
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    took = time.perf_counter() - start
    lines = [line for line in res.stderr.splitlines() if "device cuda" in line or line.startswith("epoch 2/")]
    status = "ok" if res.returncode == 0 else f"FAILED (exit {res.returncode}): {res.stderr.strip().splitlines()[-1:]}"
    return f"torchrun x{gpus} (NCCL) classify, 2 epochs: {status} in {took:.1f} s\n  " + "\n  ".join(lines)


def main() -> int:
    line = no_gpu_line()
    if line is not None:
        print(line, file=sys.stderr)
        return 2
    import torch

    props = torch.cuda.get_device_properties(0)
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
          f"{torch.cuda.device_count()} GPU(s); GPU 0: {props.name}, {props.total_memory / 2**30:.1f} GiB, "
          f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no (fp16 + grad scaler)'}")
    with tempfile.TemporaryDirectory(prefix="visiontk-gpu-check-") as tmp:
        root = Path(tmp)
        print(f"{'task':<9} {'train img/s':>11} {'train s':>8} {'predict img/s':>13}  settings")
        for task in TASKS:
            r = check_task(task, root)
            print(f"{r['task']:<9} {r['train img/s']:>11.0f} {r['train s']:>8.1f} {r['predict img/s']:>13.0f}  "
                  f"train.amp={r['amp']}; predict: {r['settings']}", flush=True)
        if torch.cuda.device_count() > 1:
            print(check_ddp(root, torch.cuda.device_count()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
