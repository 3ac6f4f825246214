"""Forward throughput of each inference backend and precision (predict --backend / --precision).

For each model: the runtimes `predict` would build (engine/runtime_choice.py,
with explicit settings: torch fp32 and bf16 autocast, channels_last; onnxruntime
fp32; OpenVINO fp32, and bf16 where its CPU plugin has it) time the forward pass
alone on one random batch at the model's input size, rounds interleaved after a
warm-up; images/s as median (min-max) over the rounds, and the ratio to torch
fp32. Then what `--backend auto --precision auto` picks from its own short
measurement (cached choices are not reused: a fresh cache folder per run).

    python benchmarks/backend_bench.py [--models demo,detect-demo,segment-demo,resnet18] [--batch 32] [--rounds 5]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_utils as bu  # noqa: E402

import torch  # noqa: E402

from visiontk.console import err_console  # noqa: E402
from visiontk.data.preprocess import Preprocess  # noqa: E402
from visiontk.engine import runtime_choice as rc  # noqa: E402
from visiontk.engine.build import model_from_checkpoint  # noqa: E402
from visiontk.engine.runtimes import installed, precisions  # noqa: E402
from visiontk.tasks.registry import get_task  # noqa: E402

# name -> (task, recipe, overrides): the demo recipes at their own sizes, and resnet18 at 224.
MODELS = {
    "demo": ("classify", "classify/shapes", []),
    "detect-demo": ("detect", "detect/shapes", []),
    "segment-demo": ("segment", "segment/shapes-fcn8s", []),
    "resnet18": ("classify", "classify/shapes",
                 ["model.backbone=resnet18", "model.backbone_options={}", "data.image_size=224", "model.head.pool=avg"]),
}
CPU = torch.device("cpu")


def settings() -> list[tuple[str, str]]:
    out = [("torch", "fp32"), ("torch", "bf16")]
    for backend in ("onnxruntime", "openvino"):
        if installed(backend):
            out += [(backend, p) for p in precisions(backend) if p in ("fp32", "bf16")]
    return out


def bench_model(name: str, batch: int, rounds: int) -> tuple[list[list], str]:
    task, recipe, overrides = MODELS[name]
    get_task(task)
    ckpt = bu.make_checkpoint(recipe, bu.CACHE / f"ckpt-{name}.pt", overrides)
    _, meta = model_from_checkpoint(ckpt)
    example = Preprocess.from_checkpoint(meta).example(batch, torch.Generator().manual_seed(0))
    runners = {}
    for backend, precision in settings():
        model, _ = model_from_checkpoint(ckpt)  # each runtime prepares (hooks) its own copy
        runtime = rc.choose_runtime(model, ckpt, CPU, precision, backend, True, False, example)
        runners[f"{backend} {precision}"] = rc._runner(runtime, CPU, example)

    def images(run):
        def go() -> int:
            run()
            return batch
        return go

    rates = bu.interleaved({k: images(r) for k, r in runners.items()}, rounds)
    base = rates["torch fp32"]
    rows = [[name, "x".join(map(str, example.shape)), k, f"{bu.median(v):.0f} ({min(v):.0f}-{max(v):.0f})",
             bu.fmt_ratio(bu.ratio_stats(v, base))] for k, v in rates.items()]
    model, _ = model_from_checkpoint(ckpt)
    picked = rc.choose_runtime(model, ckpt, CPU, "auto", "auto", True, False, example)
    return rows, f"{name}: auto picks {picked.backend} {picked.precision}"


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="demo,detect-demo,segment-demo,resnet18")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    rows, picks = [], []
    with tempfile.TemporaryDirectory(prefix="visiontk-backend-bench-") as cache:
        os.environ["VISIONTK_CACHE_DIR"] = cache  # exports and choices made afresh, then dropped
        for name in args.models.split(","):
            err_console.print(f"backends: {name}", highlight=False)
            r, pick = bench_model(name, args.batch, args.rounds)
            rows += r
            picks.append(pick)
    text = "\n".join([
        f"### Backends: forward images/s per backend and precision (batch {args.batch}, {args.rounds} rounds, "
        f"{torch.get_num_threads()} threads)\n",
        bu.environment(), "",
        bu.markdown_table(["model", "batch", "backend precision", "img/s median (min-max)", "vs torch fp32"], rows),
        "", "`--backend auto --precision auto` (its own short measurement): " + "; ".join(picks), "",
    ])
    print(text)
    return text


if __name__ == "__main__":
    main()
