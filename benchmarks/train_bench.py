"""Training throughput: the Trainer's images/s against a plain hand-written PyTorch loop.

Same recipe, data set, DataLoader settings (batch size, workers, collate,
shuffle), model, optimizer type and loss; same precision and memory format.
The Trainer's rate is the one it logs (`train/img_per_s`: its epoch loop,
from the first batch request to the last step; evaluation and checkpoints are
outside it), the plain loop is timed the same way. One epoch each per round,
rounds interleaved. Target: Trainer >= 0.95 x plain loop.

    python benchmarks/train_bench.py [--models demo,resnet18] [--modes fp32,bf16-cl] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_utils as bu  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from visiontk.console import err_console  # noqa: E402
from visiontk.engine.build import build_model  # noqa: E402
from visiontk.engine.trainer import Trainer  # noqa: E402
from visiontk.tasks.recipes import load_recipe  # noqa: E402
from visiontk.tasks.registry import get_task  # noqa: E402

# name -> (recipe, overrides, synthetic image size, images in the data set)
MODELS = {
    "demo": ("classify/shapes", [], 64, 1000),
    "resnet18": ("classify/shapes", ["model.backbone=resnet18", "model.backbone_options={}", "data.image_size=224",
                                     "model.head.pool=avg"], 224, 160),
}
# mode -> train.amp, train.channels_last
MODES = {
    "fp32": ("fp32", False),
    "fp32-cl": ("fp32", True),
    "bf16-cl": ("bf16", True),
}


def data_root(size: int, n: int) -> Path:
    from visiontk.data.synth import synth_classify

    root = bu.CACHE / f"shapes-classify-{size}px-{n}"
    if not (root / "val").is_dir():
        # 94% train: evaluation, which only the Trainer does, stays short.
        synth_classify(root, n=n, size=size, seed=0, val_fraction=0.06)
    return root


def recipe_for(name: str, mode: str, root: Path, project: Path, batch: int, workers: int):
    recipe, overrides, _, _ = MODELS[name]
    amp, cl = MODES[mode]
    return load_recipe(recipe, [*overrides, f"data.root={root}", "train.epochs=1", f"train.batch_size={batch}",
                                f"train.workers={workers}", f"train.amp={amp}", f"train.channels_last={str(cl).lower()}",
                                "output.plots=false", f"output.project={project}"])


class PlainLoop:
    """What one writes by hand: the same loader and model, no checks, no schedule, no progress."""

    def __init__(self, recipe):
        task = get_task(recipe.task)
        dataset, classes = task.build_dataset(recipe, "train", train=True)
        n, bs = len(dataset), recipe.train.batch_size
        self.loader = DataLoader(dataset, batch_size=bs, shuffle=True, num_workers=recipe.train.workers,
                                 collate_fn=task.collate, drop_last=n > 1 and n % bs == 1)
        torch.manual_seed(0)
        self.model = build_model(recipe, len(classes), load_weights=False, classes=classes)
        amp, cl = recipe.train.amp, recipe.train.channels_last
        self.dtype = torch.bfloat16 if amp == "bf16" else None
        self.channels_last = cl is True
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=recipe.train.lr)

    def epoch(self) -> tuple[int, float]:
        self.model.train()
        n = 0
        start = time.perf_counter()
        for images, labels in self.loader:
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=self.dtype, enabled=self.dtype is not None):
                loss = F.cross_entropy(self.model(images).float(), labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            n += images.shape[0]
        return n, time.perf_counter() - start


def trainer_epoch(recipe) -> tuple[int, float]:
    result = Trainer(recipe, device="cpu").fit()
    row = torch.load(Path(result["run_dir"]) / "last.pt", weights_only=True)["history"][-1]
    return 1, 1 / row["train/img_per_s"]  # (images, seconds) scaled: rate = img_per_s


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="demo,resnet18")
    ap.add_argument("--modes", default="fp32,bf16-cl", help=f"comma-separated: {', '.join(MODES)}")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers (the demo recipe's default: 0)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    quiet = err_console.quiet
    with tempfile.TemporaryDirectory(prefix="vtk-train-bench-") as tmp:
        for name in [m for m in args.models.split(",") if m]:
            _, _, size, n = MODELS[name]
            root = data_root(size, n)
            for mode in [m for m in args.modes.split(",") if m]:
                recipe = recipe_for(name, mode, root, Path(tmp), args.batch, args.workers)
                plain = PlainLoop(recipe)
                err_console.quiet = True  # the Trainer's per-epoch lines would drown the table
                try:
                    rates = bu.interleaved({"trainer": lambda: trainer_epoch(recipe), "plain": plain.epoch}, args.rounds)
                finally:
                    err_console.quiet = quiet
                rows.append([name, f"{recipe.image_size[0]}", mode, f"{bu.median(rates['trainer']):.1f}",
                             f"{bu.median(rates['plain']):.1f}",
                             bu.fmt_ratio(bu.ratio_stats(rates["trainer"], rates["plain"]), 0.95)])
                print(f"  {name} {mode}: trainer {rates['trainer']}, plain {rates['plain']}", file=sys.stderr)
    text = "\n".join([
        f"### Training, batch {args.batch}, {args.workers} DataLoader workers, one epoch per round\n",
        bu.environment(), "",
        bu.markdown_table(["model", "input", "precision", "Trainer img/s", "plain loop img/s", "Trainer / plain"], rows),
        f"\nmedian over {args.rounds} interleaved rounds (range in brackets); load average at end {bu.load_average()}",
    ])
    print(text)
    return text


if __name__ == "__main__":
    main()
